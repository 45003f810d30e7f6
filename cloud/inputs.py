"""What a deploy or teardown was asked to do: flags, MME_LOCAL_* variables and mme.toml,
through the one settings model, with the deployer's own messages for what is missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloud import checks
from cloud.errors import InvalidDeployInput
from mme_local.config_file import load_settings, toml_fields
from mme_local.settings import DeploySettings

# Checked in this order, so the first one missing is the one named.
_REQUIRED = ("endpoint_name", "role_arn", "model_data_url", "instance_type")


def deploy_settings(flags: dict[str, Any], config_file: Path | None) -> DeploySettings:
    """Flags > MME_LOCAL_* > mme.toml > defaults; a missing required value names its flag and
    its key in the file."""
    # A bad flag gets the deployer's own message; the settings model would word it otherwise.
    if flags.get("instance_type") is not None:
        checks.check_instance_type(flags["instance_type"])
    if flags.get("instance_count") is not None:
        checks.check_instance_count(flags["instance_count"])
    if flags.get("model_cache") is not None:
        checks.check_model_cache(flags["model_cache"])
    settings = load_settings(
        DeploySettings, flags, config_file, os.environ, flag_names={"models_dir": "--artifacts"}
    )
    keys = {name: place for place, name in toml_fields(DeploySettings).items()}
    for name in _REQUIRED:
        if not getattr(settings, name):
            section, key = keys[name]
            flag = "--" + name.replace("_", "-")
            raise InvalidDeployInput(
                f"{flag} is required (or set {key} in [{section}] of mme.toml)"
            )
    return settings


def teardown_settings(flags: dict[str, Any], config_file: Path | None) -> DeploySettings:
    """Region and profile for a teardown, from the same sources as a deploy's."""
    return load_settings(DeploySettings, flags, config_file, os.environ)


def resolve_region(settings: DeploySettings) -> str:
    """The settings' region, else AWS_REGION / AWS_DEFAULT_REGION, else the profile's."""
    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        from cloud.aws import make_session

        region = make_session(None, settings.profile).region_name
    if not region:
        raise InvalidDeployInput("--region is required (or set region in [endpoint] of mme.toml)")
    return str(region)
