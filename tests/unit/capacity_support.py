"""Footprints and workloads built in memory for the capacity unit tests."""

from __future__ import annotations

from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.workload import Workload

MiB = 1024**2


def footprint(
    names: list[str] | None = None,
    host_mib: int = 100,
    platform: str = "python",
    load_s: float = 1.0,
    download_s: float = 0.5,
    unload_s: float = 0.1,
    gpu_mib: int | None = None,
) -> Footprint:
    return Footprint(
        sha256="a" * 64,
        target_models=names or ["model-0.tar.gz"],
        platform=platform,
        archive_bytes=10 * MiB,
        extracted_bytes=20 * MiB,
        download_s=download_s,
        load_s=load_s,
        unload_s=unload_s,
        host_memory_bytes=host_mib * MiB,
        gpu_memory_bytes=None if gpu_mib is None else gpu_mib * MiB,
        warm_latency_s=0.01,
    )


def profile(*footprints: Footprint, stub_mib: int = 0) -> Profile:
    return Profile(
        runtime="embedded",
        measured_at="2026-11-27T00:00:00Z",
        machine="test",
        baseline_host_bytes=200 * MiB,
        baseline_gpu_bytes=None,
        stub_host_bytes=stub_mib * MiB,
        stub_gpu_bytes=None,
        artifacts=list(footprints) or [footprint()],
    )


def sequential(models: list[int], gap_s: float = 10.0, fp: Footprint | None = None) -> Workload:
    """Requests far enough apart that each one's load has ended before the next arrives."""
    count = max(models) + 1
    return Workload(
        times=[i * gap_s for i in range(len(models))],
        models=models,
        names=[f"model-{i}.tar.gz" for i in range(count)],
        footprints=[fp or footprint()] * count,
    )
