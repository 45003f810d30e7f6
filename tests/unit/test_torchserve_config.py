"""TorchServe is configured locally as the SageMaker toolkit configures it in the cloud."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mme_local.config_file import SettingsError, load_settings
from mme_local.runtime.errors import RuntimeFailure
from mme_local.runtime.factory import build_model_server
from mme_local.runtime.torchserve import EmbeddedTorchServe
from mme_local.runtime.torchserve_config import (
    LOCAL_ONLY,
    LocalPorts,
    TorchServeSettings,
    effective_properties,
    jvm_arguments,
    local_properties,
    parse_properties,
    sagemaker_environment,
    toolkit_properties,
)
from mme_local.runtime.torchserve_install import TorchServeInstall, find_java
from mme_local.settings import EmulatorSettings

PORTS = LocalPorts(18080, 18082, 17070, 17071)
CLOUD_PLATFORM = {"SAGEMAKER_BIND_TO_PORT": "8080", "SAGEMAKER_SAFE_PORT_RANGE": "20000-20999"}


def _cloud(settings: TorchServeSettings) -> dict[str, str]:
    environment = {**CLOUD_PLATFORM, **sagemaker_environment(settings)}
    return effective_properties(parse_properties(toolkit_properties(environment)), environment)


def _local(settings: TorchServeSettings) -> dict[str, str]:
    environment = sagemaker_environment(settings)
    return effective_properties(local_properties(environment, PORTS), environment)


def test_the_toolkit_file_glues_its_first_key_to_enable_model_api() -> None:
    # sagemaker-pytorch-inference 2.0.25 appends to a file without a final newline.
    written = parse_properties(toolkit_properties({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "60"}))
    assert written["enable_model_api"] == "truedefault_response_timeout=60"
    assert "default_response_timeout" not in written


def test_the_environment_repairs_the_model_api_and_timeout() -> None:
    cloud = _cloud(TorchServeSettings(response_timeout_s=75))
    assert cloud["enable_model_api"] == "true"
    assert cloud["disable_token_authorization"] == "true"
    assert cloud["default_response_timeout"] == "75"
    assert cloud["model_store"] == "/"
    assert cloud["inference_address"] == cloud["management_address"] == "http://0.0.0.0:8080"


@given(workers=st.integers(1, 8), timeout=st.integers(1, 3600))
def test_local_and_cloud_differ_only_in_the_explained_keys(workers: int, timeout: int) -> None:
    settings = TorchServeSettings(workers_per_model=workers, response_timeout_s=timeout)
    local, cloud = _local(settings), _cloud(settings)
    differing = {k for k in local.keys() | cloud.keys() if local.get(k) != cloud.get(k)}
    assert differing <= set(LOCAL_ONLY)
    assert local["default_workers_per_model"] == str(workers)
    assert local["default_response_timeout"] == str(timeout)


def test_every_local_address_is_loopback() -> None:
    local = _local(TorchServeSettings())
    for key in ("inference_address", "management_address", "metrics_address"):
        assert local[key].startswith("http://127.0.0.1:")
    assert local["grpc_inference_address"] == local["grpc_management_address"] == "127.0.0.1"
    assert local["install_py_dep_per_model"] == "false"


def test_the_heap_is_capped() -> None:
    arguments = jvm_arguments(TorchServeSettings(heap_bytes=512 * 1024 * 1024), {"vmargs": "-X"})
    assert arguments == ["-X", "-Xmx512m"]


def _server(tmp_path: Path) -> EmbeddedTorchServe:
    install = TorchServeInstall(Path("/java"), tmp_path / "site", Path("/py"), "0.12.0")
    return EmbeddedTorchServe(install, tmp_path / "work", TorchServeSettings())


def test_java_is_started_directly_with_no_config_snapshots(tmp_path: Path) -> None:
    server = _server(tmp_path)
    properties = server.properties(PORTS)
    command = server.command(tmp_path / "c.properties", properties, tmp_path / "t")
    assert command[0] == "/java"
    assert "org.pytorch.serve.ModelServer" in command
    assert command[-3:] == ["-s", "/", "-ncs"]
    assert f"-Djava.io.tmpdir={tmp_path / 't'}" in command
    assert any(argument.startswith("-Xmx") for argument in command)


def test_each_server_has_its_own_temp_folder_and_no_per_model_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TS_INSTALL_PY_DEP_PER_MODEL", "true")
    environment = _server(tmp_path).environment(tmp_path / "private")
    assert environment["TEMP"] == environment["TMPDIR"] == str(tmp_path / "private")
    assert "TS_INSTALL_PY_DEP_PER_MODEL" not in environment
    assert environment["TS_ENABLE_MODEL_API"] == "true"
    assert environment["SAGEMAKER_MULTI_MODEL"] == "true"


def test_stack_comes_from_the_endpoint_section(tmp_path: Path) -> None:
    path = tmp_path / "mme.toml"
    path.write_text('[endpoint]\nstack = "torchserve"\n')
    settings = load_settings(EmulatorSettings, {}, path, {})
    assert settings.stack == "torchserve"
    assert load_settings(EmulatorSettings, {"stack": "triton"}, path, {}).stack == "triton"


def test_an_unknown_stack_or_runtime_pairing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown stack 'tf'"):
        load_settings(EmulatorSettings, {"stack": "tf"}, None, {})
    with pytest.raises(SettingsError, match="torchserve stack runs embedded only"):
        load_settings(EmulatorSettings, {"stack": "torchserve", "runtime": "docker"}, None, {})


def test_the_factory_builds_torchserve_for_that_stack(tmp_path: Path) -> None:
    settings = EmulatorSettings(stack="torchserve")
    server = build_model_server(settings, tmp_path, tmp_path / ".runtime")
    assert isinstance(server, EmbeddedTorchServe)
    assert server.open_port is None


def test_missing_java_is_one_line_saying_how(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match=r"apt-get install openjdk-17-jre-headless") as error:
        find_java({"PATH": str(tmp_path)})
    assert "\n" not in str(error.value)
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    (tmp_path / "jdk" / "bin" / "java").write_text("")
    assert find_java({"JAVA_HOME": str(tmp_path / "jdk")}) == tmp_path / "jdk" / "bin" / "java"


async def test_a_java_that_cannot_start_leaves_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    server = _server(tmp_path)  # its java is /java, which does not exist
    with pytest.raises(FileNotFoundError):
        await server.start()
    assert list((tmp_path / "tmp").iterdir()) == []
