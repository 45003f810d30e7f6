"""The profile file: each distinct artifact's measured footprint, and which models share it.

Written by `capacity profile` (see `profiler.py`), read by `capacity plan`. JSON, so it can be
checked into a repository next to the artifacts and diffed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mme_local.capacity.errors import CapacityError

FORMAT_VERSION = 1
# Platforms that the embedded Triton serves through one thin Python stub process per model
# (the module itself lives in the shared torch host), while the cloud's Triton runs them in
# its own process through libtorch, with no per-model process at all. TorchServe runs every
# model in its own worker process locally and in the cloud alike: nothing to subtract there.
STUB_HOSTED_PLATFORMS = ("pytorch_libtorch",)


@dataclass(frozen=True)
class Footprint:
    sha256: str
    target_models: list[str]
    """Every TargetModel under the prefix with these bytes."""
    platform: str
    """config.pbtxt's platform, or its backend where no platform is set; "torchserve" for a
    TorchServe archive."""
    archive_bytes: int
    extracted_bytes: int
    download_s: float
    load_s: float
    unload_s: float
    host_memory_bytes: int
    """Host memory the load added, raw (the per-stub cost included where there is one)."""
    gpu_memory_bytes: int | None
    """GPU memory the load added (NVML); None without a GPU."""
    warm_latency_s: float | None
    """Mean model latency of the sample request once loaded; None without a sample."""
    instance_kind: str | None = None
    """The kind config.pbtxt's instance_group names (KIND_GPU, KIND_CPU); None where it names
    none (Triton then puts an instance on each GPU)."""
    instance_count: int | None = None
    """Model instances (requests served at once) config.pbtxt's instance_group names; None
    where it names none (one per GPU: one on a single-GPU instance)."""


@dataclass(frozen=True)
class Profile:
    runtime: str
    """The runtime that measured: "embedded" (per-model stubs) or "docker" (real libtorch)."""
    measured_at: str
    machine: str
    baseline_host_bytes: int
    """The model server's resident memory with nothing loaded."""
    baseline_gpu_bytes: int | None
    stub_host_bytes: int
    """Host memory of one empty TorchScript model in the stack's layout: the fixed cost of a
    per-model thin stub on Triton (its interpreter and numpy; torch is in the shared torch
    host, counted in the baseline) or of a worker with torch on TorchServe; 0 where the
    runtime has no such process."""
    stub_gpu_bytes: int | None
    artifacts: list[Footprint] = field(default_factory=list)
    version: int = FORMAT_VERSION
    stack: str = "triton"
    """The serving stack that measured (files written before it was recorded: "triton")."""

    def corrected(self, footprint: Footprint) -> bool:
        """Whether the per-stub cost is removed from this artifact's cloud footprint: only
        for Triton's embedded stubs, which the cloud's libtorch backend does not have."""
        return (
            self.stack == "triton"
            and self.runtime == "embedded"
            and footprint.platform in STUB_HOSTED_PLATFORMS
        )

    def cloud_host_bytes(self, footprint: Footprint) -> int:
        """Host memory on SageMaker: raw, less the per-stub cost where the cloud has no stub."""
        if self.corrected(footprint):
            return max(0, footprint.host_memory_bytes - self.stub_host_bytes)
        return footprint.host_memory_bytes

    def cloud_gpu_bytes(self, footprint: Footprint) -> int:
        """GPU memory on SageMaker: measured where there was a GPU, else the extracted size
        (the weights are what a GPU load copies)."""
        if footprint.gpu_memory_bytes is not None:
            stub = self.stub_gpu_bytes or 0
            if self.corrected(footprint):
                return max(0, footprint.gpu_memory_bytes - stub)
            return footprint.gpu_memory_bytes
        return footprint.extracted_bytes

    def by_target_model(self) -> dict[str, Footprint]:
        return {name: f for f in self.artifacts for name in f.target_models}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def load_profile(path: Path) -> Profile:
    """Read a profile file, or raise CapacityError naming what is wrong with it."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise CapacityError(
            f"profile {path} does not exist; create it with `mme-local capacity profile`"
        ) from None
    except (OSError, ValueError) as error:
        raise CapacityError(f"profile {path} is not readable JSON: {error}") from None
    try:
        artifacts = [Footprint(**item) for item in data.pop("artifacts")]
        profile = Profile(artifacts=artifacts, **data)
    except (KeyError, TypeError) as error:
        raise CapacityError(
            f"profile {path} is not a capacity profile ({error}); "
            "create it again with `mme-local capacity profile`"
        ) from None
    if profile.version != FORMAT_VERSION:
        raise CapacityError(
            f"profile {path} has format version {profile.version}, this mme-local reads "
            f"{FORMAT_VERSION}; create it again with `mme-local capacity profile`"
        )
    if not profile.artifacts:
        raise CapacityError(f"profile {path} has no artifacts; profile a prefix with models")
    return profile
