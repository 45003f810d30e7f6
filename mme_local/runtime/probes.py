"""Measuring what a model server uses: host memory of its processes, memory of its GPUs."""

from __future__ import annotations

from mme_local.runtime.base import ModelServer
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.procs import rss_bytes


class ServerProbes:
    """Host and GPU memory of one model server; the GPU probe exists only if it uses GPUs."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.measures_gpu = server.uses_gpus

    def host_memory(self) -> int:
        """Resident memory of the server's processes (Triton and its stubs)."""
        return rss_bytes(self.server.process_ids())

    def gpu_memory(self) -> int:
        """The fullest GPU's used bytes, as NVML (through nvidia-smi) reports it."""
        return max((gpu.memory_used_bytes for gpu in visible_gpus()), default=0)
