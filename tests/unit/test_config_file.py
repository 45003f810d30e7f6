from __future__ import annotations

from pathlib import Path

import pytest

from mme_local.config_file import ConfigFileError, load_config

EMPTY = {"endpoint": {}, "deploy": {}, "local": {}}


def test_no_file_in_cwd_gives_empty_sections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == EMPTY


def test_reads_mme_toml_from_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "mme.toml").write_text(
        '[endpoint]\nname = "shop"\nmodel_data_url = "s3://b/m/"\ninstance_type = "ml.g5.xlarge"\n'
        'region = "eu-west-1"\nartifacts = "build/models"\n\n[deploy]\ninstance_count = 2\n'
        "\n[local]\nport = 9000\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config["endpoint"] == {
        "name": "shop",
        "model_data_url": "s3://b/m/",
        "instance_type": "ml.g5.xlarge",
        "region": "eu-west-1",
        "artifacts": (tmp_path / "build" / "models").resolve(),
    }
    assert config["deploy"] == {"instance_count": 2}
    assert config["local"] == {"port": 9000}


def test_artifacts_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "cloud.toml"
    path.write_text('[endpoint]\nartifacts = "../models"\n')
    assert load_config(path)["endpoint"]["artifacts"] == (tmp_path / "models").resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[endpoint]\nnmae = "x"\n', "unknown key 'nmae' in [endpoint]; did you mean 'name'?"),
        (
            "[local]\nmax_loaded_modles = 2\n",
            "unknown key 'max_loaded_modles' in [local]; did you mean 'max_loaded_models'?",
        ),
        (
            '[local]\nrole_arn = "x"\n',
            "unknown key 'role_arn' in [local]; 'role_arn' belongs in [deploy]",
        ),
        (
            "[local]\nzzz = 1\n",
            "unknown key 'zzz' in [local]; the keys of [local] are listed in the README",
        ),
        ("[loacl]\nport = 1\n", "unknown section [loacl]; did you mean [local]?"),
        (
            "[cloud]\nx = 1\n",
            "unknown section [cloud]; known sections: [endpoint], [deploy], [local]",
        ),
        (
            "[deploy]\ninstance_count = true\n",
            "[deploy] instance_count must be an integer, not True",
        ),
        ("[endpoint]\nname = 3\n", "[endpoint] name must be a string, not 3"),
        ('endpoint = "x"\n', "endpoint must be a [endpoint] table"),
        ("[endpoint\n", "is not valid TOML"),
    ],
)
def test_mistakes_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mme.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as raised:
        load_config(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value).strip()


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="does not exist: fix --config"):
        load_config(tmp_path / "missing.toml")
