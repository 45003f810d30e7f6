"""Measuring what a model server uses: host memory of its processes, memory of its GPUs."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mme_local.runtime.base import ModelServer
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.procs import rss_bytes


@runtime_checkable
class HostsModels(Protocol):
    """A server whose models' tensors live in a shared process (the embedded torch host)."""

    def hosted_model_bytes(self, model_name: str) -> int | None: ...


class ServerProbes:
    """Host and GPU memory of one model server; the GPU probe exists only if it uses GPUs."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.measures_gpu = server.uses_gpus

    def host_memory(self) -> int:
        """Resident memory of the server's processes (Triton, its stubs, the torch host)."""
        return rss_bytes(self.server.process_ids())

    def model_memory(self, model_name: str) -> int | None:
        """Resident memory of the processes serving only this model, plus its tensors where a
        shared process holds them (the torch host); None if there is nothing to see (the
        model runs inside the server's own process, or out of sight)."""
        pids = self.server.model_process_ids(model_name)
        own = rss_bytes(pids) if pids else None
        if isinstance(self.server, HostsModels):
            hosted = self.server.hosted_model_bytes(model_name)
            if hosted is not None:
                return (own or 0) + hosted
        return own

    def gpu_memory(self) -> int:
        """The fullest GPU's used bytes, as NVML (through nvidia-smi) reports it."""
        return max((gpu.memory_used_bytes for gpu in visible_gpus()), default=0)
