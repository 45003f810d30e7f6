"""`mme.toml`: one optional file that `up` and `deploy` both read, so local and cloud agree.

Schema (every key optional; command-line flags override the file)::

    [endpoint]                              # shared by `up` and `deploy`
    name = "my-mme"                         # EndpointName
    model_data_url = "s3://bucket/models/"  # the prefix holding the model.tar.gz objects
    instance_type = "ml.g5.xlarge"          # sets local memory budgets; the cloud instance type
    region = "us-east-1"
    model_cache = "Enabled"                 # MultiModelConfig.ModelCacheSetting
    artifacts = "models"                    # folder of *.tar.gz, relative to this file

    [deploy]                                # `deploy` only
    role_arn = "arn:aws:iam::123456789012:role/SageMakerRole"
    instance_count = 1
    triton_version = "24.09"
    profile = "default"                     # AWS profile

    [local]                                 # `up` only
    s3_endpoint_url = "http://127.0.0.1:9000"  # an external S3 API instead of the embedded one
    port = 8080
    runtime = "embedded"                    # or "docker", "external"
    cache_dir = ".mme-cache"                # relative to this file
    max_loaded_models = 8
    memory_limit = "8GiB"
    disk_limit = "20GiB"

Unknown sections and keys in [endpoint] and [deploy] are errors, so a typo never goes unnoticed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FILE = "mme.toml"

_SCHEMA: dict[str, dict[str, type]] = {
    "endpoint": {
        "name": str,
        "model_data_url": str,
        "instance_type": str,
        "region": str,
        "model_cache": str,
        "artifacts": str,
    },
    "deploy": {
        "role_arn": str,
        "instance_count": int,
        "triton_version": str,
        "profile": str,
    },
    "local": {
        "s3_endpoint_url": str,
        "port": int,
        "runtime": str,
        "cache_dir": str,
        "max_loaded_models": int,
        "memory_limit": str,
        "disk_limit": str,
    },
}
# Keys naming folders, resolved against the file's own folder rather than the CWD.
_PATH_KEYS = {("endpoint", "artifacts"), ("local", "cache_dir")}


class ConfigFileError(ValueError):
    """The config file is missing (when named), unreadable, or does not match the schema."""


def load_config(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The file's sections, each present (empty if absent); {} sections if no file is found.

    With `path` None, reads ./mme.toml if it exists. Path keys come back as absolute `Path`s.
    """
    if path is None:
        path = Path.cwd() / DEFAULT_FILE
        if not path.is_file():
            return {section: {} for section in _SCHEMA}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigFileError(f"config file {path} does not exist: fix --config") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"cannot read config file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"{path} is not valid TOML ({error}): fix the syntax") from error
    return _validate(raw, path)


def _validate(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {section: {} for section in _SCHEMA}
    for section, values in raw.items():
        if section not in _SCHEMA:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            raise ConfigFileError(f"{path}: unknown section [{section}]; known sections: {known}")
        if not isinstance(values, dict):
            raise ConfigFileError(f"{path}: {section} must be a [{section}] table")
        keys = _SCHEMA[section]
        for key, value in values.items():
            if keys and key not in keys:
                raise ConfigFileError(
                    f"{path}: unknown key {key!r} in [{section}]; known keys: {', '.join(keys)}"
                )
            expected = keys.get(key)
            # bool is an int subclass; `instance_count = true` must not pass as 1.
            if expected is not None and (
                not isinstance(value, expected) or isinstance(value, bool)
            ):
                kind = "an integer" if expected is int else "a string"
                raise ConfigFileError(f"{path}: [{section}] {key} must be {kind}, not {value!r}")
            if (section, key) in _PATH_KEYS:
                value = (path.parent / value).resolve()
            config[section][key] = value
    return config
