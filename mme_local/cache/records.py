"""What the cache hands out and reports: leases, eviction records, and its own errors."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from mme_local.cache.entry import ModelEntry
from mme_local.metrics import Metrics

log = logging.getLogger(__name__)


class ModelNotReady(Exception):
    """The model is still downloading or loading after the ready timeout; it carries on."""

    def __init__(self, target_model: str, waited_s: float) -> None:
        super().__init__(
            f"Model {target_model} is not ready after {waited_s:.0f} s; "
            "it is still being downloaded or loaded, retry the request"
        )
        self.target_model = target_model


class ModelLoadTimeout(Exception):
    """The container did not finish loading in time; the half-loaded model was unloaded."""

    def __init__(self, target_model: str, timeout_s: float) -> None:
        super().__init__(
            f"Model {target_model} did not finish loading within {timeout_s:.0f} s and was "
            "unloaded; the next request loads it again"
        )
        self.target_model = target_model


class DiskFull(OSError):
    """An artifact would not fit in the disk budget or the free space of the cache folder."""


@dataclass(frozen=True)
class UnloadRecord:
    """One unload the cache asked for, for a trace: its own time in the container."""

    time: float
    """Epoch seconds when it ended."""
    unloaded: str
    """The TargetModel."""
    unload_s: float
    instance: int = 0


@dataclass(frozen=True)
class LoadRecord:
    """One load the cache asked for, for a trace: its own time in the container."""

    time: float
    """Epoch seconds when it ended (when the cache learnt it)."""
    loaded: str
    """The TargetModel."""
    load_s: float
    instance: int = 0
    measure_s: float | None = None
    """Seconds from its end until the cache had measured its memory."""
    memory_bytes: int | None = None
    """The model's host memory as the cache measured it (None: not told apart)."""
    base_bytes: int | None = None
    """The model server's own host memory, as the cache counted it after that measurement."""


@dataclass(frozen=True)
class Lease:
    """A pinned, loaded model for the duration of one request."""

    entry: ModelEntry
    cache_hit: bool
    waited_s: float
    download_s: float | None = None
    """For a cold start: the model's own download (0 when it was on disk), not the queueing."""
    load_s: float | None = None
    """For a cold start: the model's own load call, not its wait for a slot or the lane."""
    instance: int = 0
    """The endpoint's instance whose cache leased it."""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def target_model(self) -> str:
        return self.entry.target_model


@dataclass(slots=True)
class Eviction:
    """One eviction, as recorded. Not frozen: the capacity simulator records hundreds of
    thousands, and a frozen dataclass's `__init__` costs several times a plain one's."""

    target_model: str
    reason: str
    idle_s: float
    at: float
    freed_memory_bytes: int
    deleted_from_disk: bool


class EvictionLog:
    """The last 1,000 evictions, each also logged and counted by reason."""

    def __init__(self, metrics: Metrics, keep: int = 1000) -> None:
        self.metrics = metrics
        self.records: deque[Eviction] = deque(maxlen=keep)

    def record(
        self, entry: ModelEntry, reason: str, idle_s: float, freed_memory: int, deleted: bool
    ) -> None:
        self.metrics.evictions.labels(reason=reason).inc()
        self.records.append(
            Eviction(entry.target_model, reason, idle_s, time.time(), freed_memory, deleted)
        )
        log.info(
            "evicted %s: %s; idle for %.1f s%s",
            entry.target_model,
            reason,
            idle_s,
            "; deleted from disk" if deleted else "",
        )
