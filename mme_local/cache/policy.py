"""The eviction policy: which model makes room, and when room is needed.

One object, used by the live cache and by the capacity simulator, so a prediction replays
exactly the decisions the emulator makes. It holds no state of its own: callers pass their
models in least-recently-used order and what they measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

HOST_SHORT = "host memory budget"
GPU_SHORT = "GPU memory budget"
"""The reasons `EvictionPolicy.memory_short` gives (also the cache machine's own check)."""


@dataclass(frozen=True)
class Budgets:
    max_loaded_models: int | None
    host_memory_bytes: int | None
    disk_bytes: int | None
    max_archive_bytes: int
    gpu_memory_bytes: int | None = None
    """Per GPU; checked only when GPU memory is measured."""


class Candidate(Protocol):
    @property
    def evictable(self) -> bool:
        """Loaded, idle (no pins) and with no transition in flight."""

    @property
    def deletable(self) -> bool:
        """On disk only (not loaded), idle, with no transition in flight."""

    @property
    def disk_bytes(self) -> int: ...


M = TypeVar("M", bound=Candidate)


class EvictionPolicy:
    """Least recently used among idle loaded models, by count, host memory and GPU memory."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets

    def count_full(self, occupying: int) -> str | None:
        """The reason to unload one before another load, or None if there is room."""
        limit = self.budgets.max_loaded_models
        if limit is not None and occupying >= limit:
            return f"max loaded models ({limit})"
        return None

    def memory_short(self, host_used: int, gpu_used: int | None, adding: int = 0) -> str | None:
        """Which memory budget is exceeded by what is used now plus what a load will add."""
        host = self.budgets.host_memory_bytes
        if host is not None and host_used + adding > host:
            return HOST_SHORT
        gpu = self.budgets.gpu_memory_bytes
        if gpu is not None and gpu_used is not None and gpu_used > gpu:
            return GPU_SHORT
        return None

    def victim(self, least_recent_first: Iterable[M], keep: M | None = None) -> M | None:
        """The model to unload: the least recently used evictable one other than `keep`."""
        for candidate in least_recent_first:
            if candidate is not keep and candidate.evictable:
                return candidate
        return None

    def victims(self, least_recent_first: Iterable[M], keep: M | None = None) -> Iterator[M]:
        """Every evictable model other than `keep`, least recently used first."""
        for candidate in least_recent_first:
            if candidate is not keep and candidate.evictable:
                yield candidate

    def disk_victims(
        self, least_recent_first: Iterable[M], used_bytes: int, keep: M | None = None
    ) -> Iterator[M]:
        """Models to delete from disk, least recently used first, until usage fits the budget.

        Keeps a running total, so the whole pass is linear in the number of models; stops
        as soon as usage fits, before it draws one more from `least_recent_first` (which
        may be a lazy walk).
        """
        budget = self.budgets.disk_bytes
        if budget is None or used_bytes <= budget:
            return
        for candidate in least_recent_first:
            if candidate is not keep and candidate.deletable:
                used_bytes -= candidate.disk_bytes
                yield candidate
                if used_bytes <= budget:
                    return
