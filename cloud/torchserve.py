"""The TorchServe stack in the cloud: the PyTorch inference DLC, its `Environment`, its GPUs,
and whether its TorchServe runs with the configuration the local one ran with."""

from __future__ import annotations

from collections.abc import Mapping

from cloud.compat import CUDA12_MIN_COMPUTE_CAPABILITY, Verdict
from cloud.errors import InvalidDeployInput
from cloud.image import framework_image_uri
from cloud.parity import PLATFORM_ENVIRONMENT
from mme_local.instances import INSTANCE_TYPES, InstanceType
from mme_local.runtime.torchserve_config import (
    LOCAL_ONLY,
    LocalPorts,
    TorchServeSettings,
    effective_properties,
    local_properties,
    parse_properties,
    toolkit_properties,
)

FRAMEWORK = "pytorch"
# The DLC whose TorchServe (0.12.0) and toolkit (2.0.25) the local stack reproduces.
DEFAULT_PYTORCH_VERSION = "2.6"
# Ports a local server picks freely; only the keys in LOCAL_ONLY may differ anyway.
_ANY_PORTS = LocalPorts(8080, 8082, 7070, 7071)


def pytorch_image_uri(region: str, version: str, instance_type: str) -> str:
    """`763104351884.dkr.ecr.<region>.amazonaws.com/pytorch-inference:<version>-gpu-py3xx`,
    resolved offline by the SDK from the JSON it ships, as the Triton image is."""
    return framework_image_uri(FRAMEWORK, "PyTorch inference", region, version, instance_type)


def _cc(value: tuple[int, int]) -> str:
    return f"{value[0]}.{value[1]}"


def gpu_check(instance: InstanceType, version: str) -> Verdict:
    """The PyTorch GPU images are CUDA 12 builds: compute capability 5.0 and up, as Triton's.

    Raises InvalidDeployInput naming the nearest usable instance type where the GPU is older.
    """
    capability = instance.compute_capability
    if capability < CUDA12_MIN_COMPUTE_CAPABILITY:
        usable = [
            t
            for t in INSTANCE_TYPES.values()
            if t.compute_capability >= CUDA12_MIN_COMPUTE_CAPABILITY
            and t.gpu_memory_mib >= instance.gpu_memory_mib
        ]
        nearest = min(usable, key=lambda t: (abs(t.vcpus - instance.vcpus), t.gpu_memory_mib))
        raise InvalidDeployInput(
            f"{instance.name} has an {instance.gpu} (compute capability {_cc(capability)}), "
            f"which the CUDA 12 PyTorch {version} image cannot use (it needs "
            f"{_cc(CUDA12_MIN_COMPUTE_CAPABILITY)} or more): use {nearest.name} ({nearest.gpu})"
        )
    return Verdict(
        "gpu",
        "ok",
        f"{instance.gpu} (compute capability {_cc(capability)}) is used by PyTorch {version} "
        f"(minimum {_cc(CUDA12_MIN_COMPUTE_CAPABILITY)})",
    )


def cloud_properties(environment: Mapping[str, str]) -> dict[str, str]:
    """What the DLC's TorchServe runs with for the `Environment` we send."""
    full = {**PLATFORM_ENVIRONMENT, **environment}
    return effective_properties(parse_properties(toolkit_properties(full)), full)


def local_effective(environment: Mapping[str, str]) -> dict[str, str]:
    """What the local TorchServe runs with for the same `Environment`."""
    return effective_properties(local_properties(environment, _ANY_PORTS), environment)


def config_differences(environment: Mapping[str, str]) -> list[str]:
    """Keys whose value differs between the local and the cloud TorchServe, unexplained ones
    (not in LOCAL_ONLY) first."""
    local, cloud = local_effective(environment), cloud_properties(environment)
    keys = sorted(k for k in local.keys() | cloud.keys() if local.get(k) != cloud.get(k))
    return sorted(keys, key=lambda k: k in LOCAL_ONLY)


def config_verdict(settings: TorchServeSettings, environment: Mapping[str, str]) -> Verdict:
    differing = config_differences(environment)
    unexplained = [k for k in differing if k not in LOCAL_ONLY]
    if unexplained:
        return Verdict(
            "torchserve config",
            "warning",
            f"the cloud container differs: {', '.join(unexplained)}",
        )
    return Verdict(
        "torchserve config",
        "ok",
        f"same TorchServe configuration as locally ({settings.workers_per_model} worker(s) per "
        f"model, {settings.response_timeout_s} s timeout, model API on, token auth off); only "
        f"local: {', '.join(differing)}",
    )
