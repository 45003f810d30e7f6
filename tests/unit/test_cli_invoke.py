"""`mme-local invoke`: a summary on success, one line and exit 1 for every failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError

from mme_local.cli.invoke_view import body_warning, cold_or_warm, error_line, summary
from mme_local.runtime.base import free_port

CLI = str(Path(sys.executable).parent / "mme-local")


def _run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd, check=False
    )


def _client_error(code: str, message: str, status: int, **extra: object) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]


def test_a_validation_error_is_its_code_status_and_message() -> None:
    error = _client_error("ValidationError", "Endpoint x of account y not found.", 400)
    assert error_line(error, "http://h", None) == (
        "ValidationError (400): Endpoint x of account y not found."
    )


def test_a_model_error_names_the_models_status_on_one_line() -> None:
    error = _client_error(
        "ModelError",
        'Received client error (400) from model with message "{\n  bad\n}"',
        424,
        OriginalStatusCode=400,
    )
    line = error_line(error, "http://h", None)
    assert "\n" not in line
    assert line.startswith("ModelError (424, the model answered 400): Received client error")


def test_a_refused_connection_says_to_start_an_endpoint() -> None:
    error = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/x")
    line = error_line(error, "http://127.0.0.1:9", None)
    assert "no mme-local endpoint answers at http://127.0.0.1:9" in line
    assert "mme-local up" in line


def test_cloud_without_a_region_names_every_place_a_region_comes_from() -> None:
    line = error_line(NoRegionError(), None, None)
    assert "--region" in line and "AWS_DEFAULT_REGION" in line and "profile" in line


def test_a_kserve_answer_is_summarised_per_output() -> None:
    body = {
        "outputs": [
            {
                "name": "OUTPUT__0",
                "datatype": "FP32",
                "shape": [1, 2, 3],
                "data": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
            },
            {"name": "y", "datatype": "FP32", "shape": [1], "data": [6.0]},
        ]
    }
    lines = summary(json.dumps(body).encode(), "application/json")
    assert lines == [
        "OUTPUT__0  FP32  [1, 2, 3]  0.5, 1, 1.5, 2, ... (6 values)",
        "y  FP32  [1]  6",
    ]


def test_any_other_answer_shows_its_size_and_a_preview() -> None:
    assert summary(b"\x00\x01hello", "application/octet-stream") == [
        "7 bytes of application/octet-stream: \x00\x01hello"
    ]


def test_cold_or_warm_follows_the_state_before_the_call() -> None:
    assert cold_or_warm("loaded") == "warm"
    assert cold_or_warm("remote") == "cold (was remote)"
    assert cold_or_warm(None) == ""


def test_a_file_name_without_at_is_warned_about(tmp_path: Path) -> None:
    request = tmp_path / "payload"
    request.write_text("{}")
    assert body_warning("request.json") is not None
    warning = body_warning(str(request))
    assert warning is not None and f"--body @{request}" in warning
    assert body_warning("@request.json") is None
    assert body_warning('{"inputs": []}') is None


def test_a_missing_body_file_is_one_line(tmp_path: Path) -> None:
    result = _run("invoke", "m.tar.gz", "--body", "@nope.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --body @nope.json: cannot read nope.json (No such file or directory)"
    ]


def test_a_refused_connection_is_one_line_with_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _run("invoke", "m.tar.gz", "--body", "{}", "--endpoint-url", url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: no mme-local endpoint answers at {url}: start one with `mme-local up`, "
        "or pass --endpoint-url"
    ]


def test_cloud_without_a_region_is_one_line_with_exit_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    result = _run("invoke", "m.tar.gz", "--body", "{}", "--cloud", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --cloud needs a region")
