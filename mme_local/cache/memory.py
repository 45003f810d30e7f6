"""Measuring memory for the cache, always off the event loop (probes read /proc, call
nvidia-smi or `docker top`, any of which can take a while)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mme_local.cache.policy import EvictionPolicy

MemoryProbe = Callable[[], int]
ModelMemoryProbe = Callable[[str], "int | None"]
"""Memory held by one model (by its container name), or None where the runtime can't tell."""


class MemoryMeter:
    def __init__(
        self,
        host: MemoryProbe,
        gpu: MemoryProbe | None = None,
        model: ModelMemoryProbe | None = None,
    ) -> None:
        self.host = host
        self.gpu = gpu
        self.model = model

    async def host_used(self) -> int:
        return await asyncio.to_thread(self.host)

    async def model_used(self, model_name: str) -> int | None:
        """The model's own memory, or None where the runtime can't tell it apart."""
        if self.model is None:
            return None
        return await asyncio.to_thread(self.model, model_name)

    async def short(self, policy: EvictionPolicy, adding: int = 0) -> str | None:
        """Which memory budget is exceeded (measured, plus what a load is about to add)."""
        if policy.budgets.host_memory_bytes is None and self.gpu is None:
            return None
        host = await self.host_used()
        gpu = await asyncio.to_thread(self.gpu) if self.gpu is not None else None
        return policy.memory_short(host, gpu, adding)
