"""The Triton command line the cloud container will run, compared with the local one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from cloud.compat import Verdict
from cloud.serve_script import inference_type, ping_mode, serve_argv
from mme_local.runtime.triton_config import (
    SAGEMAKER_PLACEHOLDER_REPOSITORY,
    TritonSettings,
    triton_arguments,
    triton_environment,
)

# What SageMaker's platform sets in every container (documented container contract).
SAGEMAKER_PORT = 8080
PLATFORM_ENVIRONMENT = {
    "SAGEMAKER_BIND_TO_PORT": str(SAGEMAKER_PORT),
    "SAGEMAKER_SAFE_PORT_RANGE": "20000-20999",
}

# Flags whose value is a local detail: a free port, a placeholder folder.
VALUE_IS_LOCAL = ("--sagemaker-port", "--model-repository")

# Differences that remain, each with its reason (the README lists the same).
CLOUD_ONLY = {
    "--sagemaker-safe-port-range": (
        "the platform reserves ports for the container's own use; locally no port is reserved"
    ),
}


def cloud_argv(environment: Mapping[str, str]) -> list[str]:
    """What tritonserver receives on SageMaker for the container `Environment` we send."""
    return serve_argv({**PLATFORM_ENVIRONMENT, **environment})


def local_argv(settings: TritonSettings) -> list[str]:
    return triton_arguments(settings, SAGEMAKER_PORT, SAGEMAKER_PLACEHOLDER_REPOSITORY)


def _key(argument: str) -> str:
    name, _, _ = argument.partition("=")
    return name if name in VALUE_IS_LOCAL else argument


def argv_differences(local: list[str], cloud: list[str]) -> tuple[list[str], list[str]]:
    """(only local, only cloud) arguments; order aside, and local-only values aside."""
    local_count = Counter(_key(a) for a in local)
    cloud_count = Counter(_key(a) for a in cloud)
    return sorted((local_count - cloud_count).elements()), sorted(
        (cloud_count - local_count).elements()
    )


def argv_verdict(settings: TritonSettings, environment: Mapping[str, str]) -> Verdict:
    """Whether the cloud's Triton runs with the local flags and ping mode."""
    only_local, only_cloud = argv_differences(local_argv(settings), cloud_argv(environment))
    unexplained = only_local + [a for a in only_cloud if a.partition("=")[0] not in CLOUD_ONLY]
    local_ping = triton_environment()["SAGEMAKER_TRITON_PING_MODE"]
    if ping_mode(environment) != local_ping:
        unexplained.append(f"ping mode {ping_mode(environment)} (local {local_ping})")
    local_type = inference_type(triton_environment())
    if inference_type(environment) != local_type:
        unexplained.append(f"inference type {inference_type(environment)} (local {local_type})")
    if unexplained:
        return Verdict(
            "triton flags", "warning", f"the cloud container differs: {', '.join(unexplained)}"
        )
    explained = ", ".join(f"{flag} ({why})" for flag, why in CLOUD_ONLY.items())
    return Verdict(
        "triton flags",
        "ok",
        f"same flags and ping mode {local_ping} as locally; only in the cloud: {explained}",
    )
