"""One validated settings model, filled from flags, environment and mme.toml in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from mme_local.config_file import ConfigFileError, SettingsError, env_variable, load_settings
from mme_local.instances import INSTANCE_TYPES
from mme_local.settings import DeploySettings, EmulatorSettings

GiB = 1024**3


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mme.toml"
    path.write_text(text)
    return path


def test_precedence_is_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[endpoint]\nname = "from-file"\nregion = "eu-west-1"\n'
        '[local]\nmax_loaded_models = 3\nmemory_limit = "1GiB"\nport = 9000\n',
    )
    env = {"MME_LOCAL_MAX_LOADED_MODELS": "5", "MME_LOCAL_ENDPOINT_NAME": "from-env"}
    settings = load_settings(EmulatorSettings, {"endpoint_name": "from-flag"}, path, env)
    assert settings.endpoint_name == "from-flag"
    assert settings.max_loaded_models == 5
    assert settings.memory_limit_bytes == GiB
    assert settings.region == "eu-west-1"
    assert settings.port == 9000
    assert settings.runtime == "embedded"


def test_flags_that_are_none_were_not_given(tmp_path: Path) -> None:
    path = _file(tmp_path, "[local]\nport = 9001\n")
    assert load_settings(EmulatorSettings, {"port": None}, path, {}).port == 9001


def test_environment_names_drop_unit_suffixes() -> None:
    assert env_variable("memory_limit_bytes") == "MME_LOCAL_MEMORY_LIMIT"
    assert env_variable("model_ready_timeout_s") == "MME_LOCAL_MODEL_READY_TIMEOUT"
    settings = load_settings(
        EmulatorSettings,
        env={"MME_LOCAL_MEMORY_LIMIT": "2GiB", "MME_LOCAL_PULL": "true"},
        read_file=False,
    )
    assert (settings.memory_limit_bytes, settings.pull) == (2 * GiB, True)


def test_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "mme.toml"
    path.write_text('[endpoint]\nartifacts = "../models"\n[local]\ncache_dir = "cache"\n')
    settings = load_settings(EmulatorSettings, {}, path, {})
    assert settings.models_dir == (tmp_path / "models").resolve()
    assert settings.cache_dir == (tmp_path / "conf" / "cache").resolve()


def test_instance_type_sets_budgets_from_the_table() -> None:
    settings = EmulatorSettings(instance_type="ml.g4dn.2xlarge")
    g4dn = INSTANCE_TYPES["ml.g4dn.2xlarge"]
    assert settings.host_memory_budget() == 32 * GiB == g4dn.host_memory_bytes
    assert settings.gpu_memory_budget() == 15_360 * 1024**2
    assert EmulatorSettings(memory_limit_bytes="3GiB").host_memory_budget() == 3 * GiB
    assert settings.disk_budget() == 225 * 1000**3, "g4dn.2xlarge's NVMe storage"
    assert settings.parallel_downloads() == settings.parallel_loads() == 8
    assert EmulatorSettings(instance_type="ml.p3.2xlarge").disk_budget() is None, "EBS only"


def test_settings_are_frozen() -> None:
    settings = EmulatorSettings()
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]
    assert settings.model_copy(update={"port": 1}).port == 1


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        # unknown instance type: names the known ones
        (
            {"instance_type": "ml.c5.xlarge"},
            {},
            "--instance-type: ml.c5.xlarge is not an instance type SageMaker runs GPU multi-model"
            " endpoints on; GPU MME needs one GPU per instance: use one of ml.p2.xlarge;",
        ),
        # bad size string
        ({}, {"MME_LOCAL_MEMORY_LIMIT": "lots"}, "MME_LOCAL_MEMORY_LIMIT: 'lots' is not a size"),
        # bad enum: lists the allowed values
        (
            {"model_cache": "Disabeld"},
            {},
            "--model-cache: 'Disabeld' is not allowed; input should be 'Enabled' or 'Disabled'",
        ),
        (
            {"runtime": "podman"},
            {},
            "--runtime: unknown runtime 'podman'; choose one of: embedded, docker, external",
        ),
        # bad number
        ({"max_loaded_models": 0}, {}, "--max-loaded-models: Input should be greater than"),
        ({}, {"MME_LOCAL_PORT": "http"}, "MME_LOCAL_PORT: Input should be a valid integer"),
    ],
)
def test_each_bad_value_is_one_line_naming_its_source(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(EmulatorSettings, flags, env=env, read_file=False)
    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_a_bad_value_in_the_file_names_section_and_key(tmp_path: Path) -> None:
    path = _file(tmp_path, '[local]\ndisk_limit = "20 gigs"\n')
    with pytest.raises(SettingsError, match=r"^\[local\] disk_limit in .*mme.toml: '20 gigs'"):
        load_settings(EmulatorSettings, {}, path, {})
    path = _file(tmp_path, '[endpoint]\ninstance_type = "ml.g5.12xlarge"\n')
    with pytest.raises(SettingsError, match="is not a single-GPU size of its family"):
        load_settings(EmulatorSettings, {}, path, {})


def test_an_unknown_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = _file(tmp_path, "[local]\nmax_loaded_modles = 3\n")
    with pytest.raises(ConfigFileError, match="unknown key 'max_loaded_modles' in \\[local\\]"):
        load_settings(EmulatorSettings, {}, path, {})


def test_deploy_reads_the_shared_section_and_its_own(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[endpoint]\nname = "shop"\ninstance_type = "ml.g5.2xlarge"\n'
        '[deploy]\ninstance_count = 2\nrole_arn = "arn:aws:iam::123456789012:role/R"\n'
        "[local]\nport = 9000\n",
    )
    settings = load_settings(DeploySettings, {}, path, {})
    assert (settings.endpoint_name, settings.instance_type) == ("shop", "ml.g5.2xlarge")
    assert (settings.instance_count, settings.role_arn) == (2, "arn:aws:iam::123456789012:role/R")
