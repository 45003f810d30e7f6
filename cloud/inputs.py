"""What a deploy or teardown was asked to do: flags, MME_LOCAL_* variables and mme.toml,
through the one settings model, with the deployer's own messages for what is missing."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cloud import checks
from cloud.errors import InvalidDeployInput, Problems
from mme_local.config_file import load_settings, toml_fields
from mme_local.settings import DeploySettings

# Checked in this order, so the first one missing is the one named.
_REQUIRED = ("endpoint_name", "role_arn", "model_data_url", "instance_type")


def deploy_settings(flags: dict[str, Any], config_file: Path | None) -> DeploySettings:
    """Flags > MME_LOCAL_* > mme.toml > defaults; a missing required value names its flag and
    its key in the file."""
    # A bad flag gets the deployer's own message; the settings model would word it otherwise.
    problems = Problems()
    flag_checks: dict[str, Callable[[Any], None]] = {
        "instance_type": checks.check_instance_type,
        "instance_count": checks.check_instance_count,
        "model_cache": checks.check_model_cache,
    }
    flags = dict(flags)
    reported = set()
    for name, check in flag_checks.items():
        if flags.get(name) is not None and problems.check(partial(check, flags[name])) is False:
            flags[name] = None  # reported; the settings model would only repeat it
            reported.add(name)
    settings = load_settings(
        DeploySettings, flags, config_file, os.environ, flag_names={"models_dir": "--artifacts"}
    )
    keys = {name: place for place, name in toml_fields(DeploySettings).items()}
    for name in _REQUIRED:
        if not getattr(settings, name) and name not in reported:
            section, key = keys[name]
            flag = "--" + name.replace("_", "-")
            problems.found.append(f"{flag} is required (or set {key} in [{section}] of mme.toml)")
    if problems.found:
        # The values that are there are checked too, so every problem is reported at once.
        present: tuple[tuple[str | None, Callable[[str], object]], ...] = (
            (settings.endpoint_name, checks.check_resource_name),
            (settings.role_arn, checks.check_role_arn),
            (settings.model_data_url, checks.parse_model_data_url),
            (settings.region, checks.check_region),
        )
        for value, check_value in present:
            if value:
                problems.check(partial(check_value, value))
    problems.check(lambda: resolve_region(settings))
    problems.raise_any()
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
        raise InvalidDeployInput(
            "--region is required: pass --region, set AWS_REGION or AWS_DEFAULT_REGION, use a "
            "profile that has a region (--profile, AWS_PROFILE; `aws configure`), or set "
            "region in [endpoint] of mme.toml"
        )
    return str(region)
