"""What a model holds on a GPU instance, and what the instance has left for models.

On a GPU multi-model endpoint a model lives in GPU memory: AWS's "How multi-model endpoints
work" says a model loads into "the container's memory (CPU or GPU, depending on whether you
have CPU or GPU backed instances)", and a 507 from the GPU container makes the platform
unload unused models. So each memory is charged for what it holds there:

- a `KIND_GPU` model (Triton's default when `config.pbtxt` names no instance group): its
  weights and workspace in GPU memory, and only a small host share in host memory;
- a `KIND_CPU` model: everything in host memory, nothing on the GPU.

A GPU profile (the GPU check, or `capacity profile` on a GPU) measured both memories and
replaces every estimate below. A CPU-only profile measured host memory with the weights in
it, so for `KIND_GPU` models the GPU footprint is estimated (parameter bytes, taken as the
extracted size, plus a workspace allowance) and the host share is an allowance too. The
defaults come from AWS's GPU MME benchmark (see `Allowances`); the host share and host reserve
are assumptions.

The instance's budgets leave room for what is not a model: host memory less a reserve for the
OS, the platform's agents and the container's other processes; GPU memory less the CUDA
context and backend (measured by a GPU profile, else an allowance).
"""

from __future__ import annotations

from dataclasses import dataclass

from mme_local.capacity.profile import Footprint, Profile

MiB = 1024**2
GiB = 1024**3

GPU, CPU = "KIND_GPU", "KIND_CPU"


@dataclass(frozen=True)
class Allowances:
    """Stated assumptions where the profile has no measurement (each one a `plan` flag)."""

    host_share_bytes: int = 10 * MiB
    """Host memory a `KIND_GPU` model holds besides its GPU copy (backend bookkeeping, the
    model's config and I/O buffers), used when no GPU profile measured it (--host-share)."""
    gpu_workspace_share: float = 0.15
    """GPU memory a model needs beyond its parameters (activations, cuDNN/cuBLAS workspace),
    as a share of the parameter bytes, when no GPU profile measured it (--gpu-workspace 15%).
    AWS's GPU MME benchmark measured about 480 MB per TorchScript bert-base copy on a T4,
    whose fp32 weights are about 420 MB: about 15% over the weights."""
    gpu_workspace_bytes: int = 0
    """Or a fixed amount per model (--gpu-workspace 64MiB), in place of the share."""
    host_reserve_bytes: int = 2 * GiB
    """Host memory kept from models: the OS, SageMaker's agents and the container's
    processes other than the model server (--host-reserve). An assumption: AWS publishes no
    figure."""
    gpu_baseline_bytes: int = 2_900_000_000
    """GPU memory not available to models with nothing loaded (CUDA context, the backend,
    the platform's headroom), used when no GPU profile measured it (--gpu-baseline). In the
    same AWS benchmark 25-26 copies of 480 MB filled the T4's 15,360 MiB: about 2.9 GB went
    elsewhere, once per instance."""


@dataclass(frozen=True)
class ModelMemory:
    host_bytes: int
    gpu_bytes: int
    estimated: bool
    """The GPU footprint is an estimate (no GPU profile), not a measurement."""


def instance_kind(footprint: Footprint) -> str:
    """Where Triton places the model's instances: as its config says, else on the GPU."""
    return CPU if footprint.instance_kind == CPU else GPU


def cloud_memory(profile: Profile, footprint: Footprint, allowances: Allowances) -> ModelMemory:
    """What the model holds on a GPU instance, in host and in GPU memory."""
    host = profile.cloud_host_bytes(footprint)
    if instance_kind(footprint) == CPU:
        return ModelMemory(host, 0, estimated=False)
    if footprint.gpu_memory_bytes is not None:
        return ModelMemory(host, profile.cloud_gpu_bytes(footprint), estimated=False)
    weights = footprint.extracted_bytes
    gpu = weights + int(weights * allowances.gpu_workspace_share) + allowances.gpu_workspace_bytes
    return ModelMemory(allowances.host_share_bytes, gpu, estimated=True)


@dataclass(frozen=True)
class InstanceMemory:
    host_budget_bytes: int
    gpu_budget_bytes: int
    base_host_bytes: int
    base_gpu_bytes: int
    gpu_base_measured: bool


def instance_memory(
    host_memory_bytes: int, gpu_memory_bytes: int, profile: Profile, allowances: Allowances
) -> InstanceMemory:
    """Budgets with the reserve taken off host memory, and the model server's own share."""
    measured = profile.baseline_gpu_bytes is not None
    return InstanceMemory(
        host_budget_bytes=max(0, host_memory_bytes - allowances.host_reserve_bytes),
        gpu_budget_bytes=gpu_memory_bytes,
        base_host_bytes=profile.baseline_host_bytes,
        base_gpu_bytes=profile.baseline_gpu_bytes
        if profile.baseline_gpu_bytes is not None
        else allowances.gpu_baseline_bytes,
        gpu_base_measured=measured,
    )
