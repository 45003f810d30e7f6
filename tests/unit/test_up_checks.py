"""What `up` refuses or warns about before it starts anything."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mme_local.cli.up_checks import check_gateway_port, check_models_folder
from mme_local.config_file import SettingsError

CLI = str(Path(sys.executable).parent / "mme-local")


def test_a_missing_models_folder_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^--models: .*nope does not exist$"):
        check_models_folder(tmp_path / "nope", "--models")


def test_an_empty_models_folder_is_a_warning(tmp_path: Path) -> None:
    warnings = check_models_folder(tmp_path, "--models")
    assert warnings == [f"--models: {tmp_path} holds no *.tar.gz artifact; serving an empty prefix"]


def test_model_folders_without_archives_get_a_hint(tmp_path: Path) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.pbtxt").write_text('backend: "python"')
    (tmp_path / "minilm").mkdir()
    (tmp_path / "minilm" / "config.json").write_text("{}")
    warnings = check_models_folder(tmp_path, "[endpoint] artifacts in mme.toml")
    assert len(warnings) == 3
    assert f"mme-local package {tmp_path / 'minilm'} --out-dir {tmp_path}" in warnings[1]
    assert f"tar -C {tmp_path} -czf {tmp_path / 'bert'}.tar.gz bert" in warnings[2]


def test_a_model_folder_given_as_models_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    warnings = check_models_folder(tmp_path, "--models")
    assert f"`mme-local package {tmp_path} --out-dir artifacts`" in warnings[1]


def test_a_folder_with_archives_passes(tmp_path: Path) -> None:
    (tmp_path / "model-0.tar.gz").write_bytes(b"")
    assert check_models_folder(tmp_path, "--models") == []


def test_a_port_in_use_names_the_flag_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError) as raised:
            check_gateway_port("127.0.0.1", port, "the default", "the default")
    assert str(raised.value).startswith(
        f"--port: 127.0.0.1:{port} is already in use (another mme-local up?); "
        "choose another port with --port"
    )


def test_a_port_from_mme_toml_names_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=r"^\[local\] port in mme.toml: "):
            check_gateway_port("127.0.0.1", port, "[local] port in mme.toml", "the default")


def test_an_address_not_on_this_host_names_host() -> None:
    with pytest.raises(SettingsError, match=r"^--host: cannot listen on 192\.0\.2\.1:"):
        check_gateway_port("192.0.2.1", 8080, "the default", "--host")


def _up(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [CLI, "up", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )
    return result, time.monotonic() - started


def test_up_on_a_taken_port_stops_before_publishing_or_starting_triton(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _ = _up("--port", str(port), "--models", "models", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: --port: 127.0.0.1:{port} is already in use")
    assert "publishing" not in result.stderr and "Triton" not in result.stderr
    assert "is up" not in result.stderr


def test_up_with_a_missing_models_folder_stops_before_anything(tmp_path: Path) -> None:
    (tmp_path / "mme.toml").write_text('[endpoint]\nartifacts = "nope"\n')
    result, _ = _up(cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: [endpoint] artifacts in mme.toml: {tmp_path / 'nope'} does not exist"
    )


def test_up_with_a_bad_log_level_is_one_line(tmp_path: Path) -> None:
    result, _ = _up("--log-level", "loud", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --log-level: 'loud' is not a level; choose one of: debug, info, warning, error"
    )


def _compiles(snippet: str) -> None:
    compile(textwrap.dedent(snippet), "<banner>", "exec")


def test_the_banner_snippet_is_python_whatever_the_folder_holds(tmp_path: Path) -> None:
    from mme_local.cli.up_cmd import _banner, example_request
    from tests.support import doubler_archive

    def snippet(example: tuple[str, str]) -> str:
        text = _banner("http://h:1", "e", None, "s3://b/p/", "t", example)
        return text[text.index("  import boto3") : text.index("Press Ctrl-C")]

    assert example_request(None) == ("model-0.tar.gz", "b'...'  # the model's request body")
    _compiles(snippet(example_request(None)))
    doubler_archive(tmp_path, "m.tar.gz")
    target, body = example_request(tmp_path)
    assert target == "m.tar.gz" and body.startswith('b\'{"inputs"')
    _compiles(snippet((target, body)))
    (tmp_path / "request.json").write_text("{}")
    assert example_request(tmp_path) == (
        "m.tar.gz",
        f'open("{(tmp_path / "request.json").resolve()}", "rb").read()',
    )
