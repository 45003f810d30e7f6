"""How Triton is configured, and the same configuration as SageMaker's `serve` script reads it.

One `TritonSettings` produces the local command line (`triton_arguments`), the environment the
local process or container gets (`triton_environment`), and the `Environment` of the cloud
model's container (`sagemaker_environment`), so the Triton that ran locally is the one deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024

# `serve` registers this empty folder as the repository of a multi-model endpoint.
SAGEMAKER_PLACEHOLDER_REPOSITORY = "/tmp/sagemaker"


class UnportableTritonSetting(ValueError):
    """A local Triton setting that SageMaker's `serve` script cannot pass on."""


@dataclass(frozen=True)
class TritonSettings:
    """How Triton is started: the same knobs SageMaker's `serve` script reads."""

    port: int | None = None
    """SageMaker front-end port; None picks a free loopback port."""
    thread_count: int = 8
    """SAGEMAKER_TRITON_THREAD_COUNT: threads serving the SageMaker front end."""
    shm_default_bytes: int = 16 * MiB
    """SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE: Python backend shared memory per model."""
    shm_growth_bytes: int = 1 * MiB
    """SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE."""
    log_verbose: int = 0
    """SAGEMAKER_TRITON_LOG_VERBOSE."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    """SAGEMAKER_TRITON_ADDITIONAL_ARGS, already split."""
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 15.0


def triton_arguments(settings: TritonSettings, port: int, repository: str) -> list[str]:
    """Flags as SageMaker's `serve` passes them for a multi-model endpoint."""
    return [
        "--allow-sagemaker=true",
        "--allow-http=false",
        "--allow-grpc=false",
        "--allow-metrics=false",
        f"--sagemaker-port={port}",
        f"--sagemaker-thread-count={settings.thread_count}",
        "--model-control-mode=explicit",
        f"--model-repository={repository}",
        "--model-namespacing=true",
        f"--backend-config=python,shm-default-byte-size={settings.shm_default_bytes}",
        f"--backend-config=python,shm-growth-byte-size={settings.shm_growth_bytes}",
        f"--log-verbose={settings.log_verbose}",
        *settings.extra_args,
    ]


def triton_environment() -> dict[str, str]:
    """What tritonserver itself reads from the environment on a multi-model endpoint.

    The ping mode is set here because `serve` computes it without exporting it.
    """
    return {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_TRITON_PING_MODE": "live"}


def sagemaker_environment(settings: TritonSettings) -> dict[str, str]:
    """The container `Environment` that makes `serve` start Triton like `triton_arguments`.

    Raises UnportableTritonSetting for an extra argument `serve` would split apart: it passes
    SAGEMAKER_TRITON_ADDITIONAL_ARGS unquoted, so no argument may contain white space.
    """
    for argument in settings.extra_args:
        if not argument or any(c.isspace() for c in argument):
            raise UnportableTritonSetting(
                f"Triton argument {argument!r} cannot reach the cloud container: its `serve` "
                "script splits SAGEMAKER_TRITON_ADDITIONAL_ARGS at spaces; use --flag=value "
                "without spaces"
            )
    environment = {
        **triton_environment(),
        # Spelled out although older images hard-code them: newer `serve` scripts read them.
        "SAGEMAKER_TRITON_ALLOW_GRPC": "false",
        "SAGEMAKER_TRITON_ALLOW_METRICS": "false",
        "SAGEMAKER_TRITON_THREAD_COUNT": str(settings.thread_count),
        "SAGEMAKER_TRITON_LOG_VERBOSE": str(settings.log_verbose),
        "SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE": str(settings.shm_default_bytes),
        "SAGEMAKER_TRITON_SHM_GROWTH_BYTE_SIZE": str(settings.shm_growth_bytes),
    }
    if settings.extra_args:
        environment["SAGEMAKER_TRITON_ADDITIONAL_ARGS"] = " ".join(settings.extra_args)
    return environment
