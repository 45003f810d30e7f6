"""Filling the settings models from flags, the environment and `mme.toml`.

`mme.toml` is one optional file that `up` and `deploy` both read, so local and cloud agree::

    [endpoint]                              # shared by `up` and `deploy`
    name = "my-mme"                         # EndpointName
    model_data_url = "s3://bucket/models/"  # the prefix holding the model.tar.gz objects
    instance_type = "ml.g5.xlarge"          # the cloud instance type; local default budgets
    region = "us-east-1"
    stack = "triton"                        # or "torchserve"
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

The keys are the settings models' own (each field names its section and key), so the file's
schema can't drift from the models. Unknown sections and keys are errors, so a typo never goes
unnoticed.
"""

from __future__ import annotations

import difflib
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mme_local.settings import DeploySettings, EmulatorSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FILE = "mme.toml"
ENV_PREFIX = "MME_LOCAL_"
SECTIONS = ("endpoint", "deploy", "local")

Model = TypeVar("Model", bound=BaseModel)


class ConfigFileError(ValueError):
    """The config file is missing (when named), unreadable, or does not match the schema."""


class SettingsError(ValueError):
    """A flag, environment variable or file value is not valid; the text names which."""


def toml_fields(model: type[BaseModel]) -> dict[tuple[str, str], str]:
    """(section, key) in mme.toml -> the model's field name."""
    found: dict[tuple[str, str], str] = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "toml" in extra:
            section, key = typing.cast(tuple[str, str], extra["toml"])
            found[(section, key)] = name
    return found


def _leaf_types(annotation: Any) -> set[type]:
    """The plain types a TOML value may have for a field of this annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        # A size accepts "8GiB" as well as a plain number of bytes.
        accepts_text = any(type(m).__name__ == "BeforeValidator" for m in metadata)
        return _leaf_types(base) | ({str} if accepts_text else set())
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    if origin is typing.Literal:
        return {type(value) for value in typing.get_args(annotation)}
    if annotation is type(None):
        return set()
    if annotation is Path:
        return {str}
    if annotation is float:
        return {int, float}
    return {annotation}


def _schema() -> dict[str, dict[str, tuple[set[type], bool]]]:
    """section -> key -> (accepted TOML value types, whether the value is a path)."""
    schema: dict[str, dict[str, tuple[set[type], bool]]] = {s: {} for s in SECTIONS}
    for model in (EmulatorSettings, DeploySettings):
        for (section, key), name in toml_fields(model).items():
            annotation = model.model_fields[name].annotation
            is_path = annotation is Path or Path in typing.get_args(annotation)
            schema[section][key] = (_leaf_types(annotation), is_path)
    return schema


_SCHEMA = _schema()


def load_config(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The file's sections, each present (empty if absent); empty sections if no file is found.

    With `path` None, reads ./mme.toml if it exists. Path keys come back as absolute `Path`s.
    """
    if path is None:
        path = Path.cwd() / DEFAULT_FILE
        if not path.is_file():
            return {section: {} for section in SECTIONS}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigFileError(f"config file {path} does not exist: fix --config") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"cannot read config file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError(f"{path} is not valid TOML ({error}): fix the syntax") from error
    return _validate(raw, path)


def _kind(accepted: set[type]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if accepted == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in sorted(accepted, key=str))


def _hint(key: str, section: str) -> str:
    """`did you mean 'max_loaded_models'?`, looking in the other sections too; else where the
    keys are listed."""
    close = difflib.get_close_matches(key, _SCHEMA[section], n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    for other in SECTIONS:
        if other != section and key in _SCHEMA[other]:
            return f"{key!r} belongs in [{other}]"
    return f"the keys of [{section}] are listed in the README under mme.toml"


def _validate(raw: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for section, values in raw.items():
        if section not in _SCHEMA:
            close = difflib.get_close_matches(section, SECTIONS, n=1)
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            hint = f"did you mean [{close[0]}]?" if close else f"known sections: {known}"
            raise ConfigFileError(f"{path}: unknown section [{section}]; {hint}")
        if not isinstance(values, dict):
            raise ConfigFileError(f"{path}: {section} must be a [{section}] table")
        keys = _SCHEMA[section]
        for key, value in values.items():
            if key not in keys:
                raise ConfigFileError(
                    f"{path}: unknown key {key!r} in [{section}]; {_hint(key, section)}"
                )
            accepted, is_path = keys[key]
            # bool is an int subclass; `instance_count = true` must not pass as 1.
            if not isinstance(value, tuple(accepted)) or (
                isinstance(value, bool) and bool not in accepted
            ):
                raise ConfigFileError(
                    f"{path}: [{section}] {key} must be {_kind(accepted)}, not {value!r}"
                )
            if is_path:
                value = (path.parent / str(value)).resolve()
            config[section][key] = value
    return config


def _public(field: str) -> str:
    """The name users see: `memory_limit` for `memory_limit_bytes`, `model_ready_timeout`..."""
    return field.removesuffix("_bytes").removesuffix("_s")


def env_variable(field: str) -> str:
    """`MME_LOCAL_MEMORY_LIMIT` for `memory_limit_bytes`, `MME_LOCAL_ENDPOINT_NAME`..."""
    return f"{ENV_PREFIX}{_public(field).upper()}"


def setting_source(
    model: type[BaseModel],
    name: str,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file: Path | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> str:
    """Where `load_settings` took field `name` from, worded as in its messages: the flag, the
    MME_LOCAL_* variable, `[section] key in mme.toml`, or `the default`."""
    if flags.get(name) is not None:
        return (flag_names or {}).get(name, f"--{_public(name).replace('_', '-')}")
    if env_variable(name) in env:
        return env_variable(name)
    places = {field: place for place, field in toml_fields(model).items()}
    if name in places:
        section, key = places[name]
        if key in load_config(file)[section]:
            return f"[{section}] {key} in {file if file is not None else DEFAULT_FILE}"
    return "the default"


def load_settings(
    model: type[Model],
    flags: Mapping[str, Any] | None = None,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flag_names: Mapping[str, str] | None = None,
    read_file: bool = True,
) -> Model:
    """One validated settings object: flag > environment > file > default, per field.

    `flags` maps field names to values (None = not given); `flag_names` maps a field to the
    flag a user typed, for messages (default `--memory-limit` for `memory_limit_bytes`). `env`
    is searched for `env_variable(field)`, e.g. `MME_LOCAL_MEMORY_LIMIT`. `file` is an
    mme.toml (None: ./mme.toml when it exists; `read_file` False: none). The first bad value
    raises SettingsError naming its source and what is allowed.
    """
    values: dict[str, tuple[Any, str]] = {}
    file_label = str(file) if file is not None else DEFAULT_FILE
    config = load_config(file) if read_file else {section: {} for section in SECTIONS}
    for (section, key), name in toml_fields(model).items():
        if key in config[section]:
            values[name] = (config[section][key], f"[{section}] {key} in {file_label}")
    for name in model.model_fields:
        variable = env_variable(name)
        if env is not None and variable in env:
            values[name] = (env[variable], variable)
    for name, value in (flags or {}).items():
        if value is not None:
            label = (flag_names or {}).get(name, f"--{_public(name).replace('_', '-')}")
            values[name] = (value, label)
    try:
        return model.model_validate({name: value for name, (value, _) in values.items()})
    except ValidationError as error:
        raise SettingsError(_one_line(error, values)) from None


def _one_line(error: ValidationError, values: Mapping[str, tuple[Any, str]]) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    value, where = values.get(name, (first.get("input"), name))
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "literal_error":
        message = f"{value!r} is not allowed; {message[0].lower()}{message[1:]}"
    elif first["type"] == "extra_forbidden":
        message = "is not a setting"
    # A rule across settings (a model validator) has no one field to name; its text names them.
    return f"{where}: {message}" if where else message
