"""Whether a Triton image can use an instance type's GPU, and what makes it able to.

- From release 24.11 (Triton 2.52; server CMakeLists.txt, commit 377b31c) tritonserver ignores
  GPUs below compute capability 7.5 unless `--min-supported-compute-capability` lowers it;
  before, the floor was 6.0.
- Every Triton image SageMaker publishes (23.12 onwards) is built on CUDA 12, which cannot run
  on GPUs below compute capability 5.0 (the K80 of ml.p2 is 3.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.errors import InvalidDeployInput
from mme_local.instances import INSTANCE_TYPES, InstanceType

CUDA12_MIN_COMPUTE_CAPABILITY = (5, 0)
FLOOR_RAISED_IN = (24, 11)
MIN_COMPUTE_CAPABILITY_FLAG = "--min-supported-compute-capability"


@dataclass(frozen=True)
class Verdict:
    check: str
    outcome: str
    """"ok", "added" (the plan adds something to make it work) or "warning"."""
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.outcome}: {self.detail}"


def release(version: str) -> tuple[int, int]:
    """'24.09' -> (24, 9); Triton container releases are YY.MM."""
    try:
        year, month = version.split(".")[:2]
        return int(year), int(month)
    except ValueError as error:
        raise InvalidDeployInput(
            f"--triton-version {version!r} is not a Triton release like 24.09"
        ) from error


def triton_compute_floor(version: str) -> tuple[int, int]:
    return (7, 5) if release(version) >= FLOOR_RAISED_IN else (6, 0)


def _cc(value: tuple[int, int]) -> str:
    return f"{value[0]}.{value[1]}"


def nearest_usable(instance: InstanceType, version: str) -> InstanceType:
    """The instance type closest in size whose GPU this image uses as it is, with no less memory."""
    floor = triton_compute_floor(version)
    usable = [
        t
        for t in INSTANCE_TYPES.values()
        if t.compute_capability >= floor and t.gpu_memory_mib >= instance.gpu_memory_mib
    ]
    return min(usable, key=lambda t: (abs(t.vcpus - instance.vcpus), t.gpu_memory_mib, t.name))


def gpu_check(instance: InstanceType, version: str) -> tuple[Verdict, tuple[str, ...]]:
    """The verdict for this pairing and the Triton arguments it needs.

    Raises InvalidDeployInput, naming the nearest pairing that works, where none can help.
    """
    capability = instance.compute_capability
    if capability < CUDA12_MIN_COMPUTE_CAPABILITY:
        nearest = nearest_usable(instance, version)
        raise InvalidDeployInput(
            f"{instance.name} has an {instance.gpu} (compute capability {_cc(capability)}), "
            f"which the CUDA 12 Triton {version} image cannot use (every SageMaker Triton image "
            f"needs {_cc(CUDA12_MIN_COMPUTE_CAPABILITY)} or more): use {nearest.name} "
            f"({nearest.gpu}) with --triton-version {version}"
        )
    floor = triton_compute_floor(version)
    if capability >= floor:
        detail = (
            f"{instance.gpu} (compute capability {_cc(capability)}) is used by Triton {version} "
            f"(minimum {_cc(floor)})"
        )
        return Verdict("gpu", "ok", detail), ()
    flag = f"{MIN_COMPUTE_CAPABILITY_FLAG}={_cc(capability)}"
    detail = (
        f"Triton {version} ignores GPUs below compute capability {_cc(floor)} and the "
        f"{instance.gpu} is {_cc(capability)}: added {flag} (or use --triton-version 24.09)"
    )
    return Verdict("gpu", "added", detail), (flag,)


def footprint_check(instance: InstanceType, footprint_bytes: int, measured: bool) -> Verdict:
    """Compare a model's footprint with the GPU memory an instance really has."""
    usable = instance.gpu_memory_bytes
    what = "measured footprint" if measured else "largest artifact's extracted size (lower bound)"
    mib = footprint_bytes / 2**20
    if footprint_bytes > usable:
        return Verdict(
            "memory",
            "warning",
            f"{what} {mib:,.0f} MiB exceeds the {instance.gpu_memory_mib:,} MiB usable on "
            f"{instance.name}'s {instance.gpu}: pick a larger GPU or a smaller model",
        )
    return Verdict(
        "memory",
        "ok",
        f"{what} {mib:,.0f} MiB fits the {instance.gpu_memory_mib:,} MiB usable on {instance.name}",
    )
