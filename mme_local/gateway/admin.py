"""The admin views under /_mme and the health answer, without HTTP: plain data for the routes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mme_local.cache.entry import ModelEntry
from mme_local.cache.layout import model_hash
from mme_local.cache.manager import ModelCache
from mme_local.metrics import Metrics
from mme_local.runtime.base import ModelServer
from mme_local.runtime.probes import ServerProbes
from mme_local.settings import EmulatorSettings
from mme_local.store.source import ModelStore


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


# States in which a model holds memory in the model server.
_RESIDENT = frozenset({"loaded", "unloading"})


def model_row(
    entry: ModelEntry, size_bytes: int | None, evictions: int = 0, stored_etag: str | None = None
) -> dict[str, Any]:
    """One model as the views show it. `stored_etag`: the object's ETag in S3 now, if listed;
    a difference from the downloaded one shows as changed without flagging the cache (a view
    changes nothing; the periodic artifact check does that)."""
    resident = entry.state.value in _RESIDENT
    changed = entry.artifact_changed or (
        stored_etag is not None
        and entry.etag is not None
        and entry.disk_bytes > 0
        and stored_etag != entry.etag
    )
    return {
        "target_model": entry.target_model,
        "state": entry.state.value,
        "size_bytes": size_bytes,
        "disk_bytes": entry.disk_bytes,
        # What it holds now; the footprint measured at its last load stays in
        # `last_memory_bytes` (an unloaded model holds none).
        "memory_bytes": entry.memory_bytes if resident else None,
        "last_memory_bytes": entry.memory_bytes,
        "last_used": _iso(entry.last_used_wall) if entry.invocations else None,
        "invocations": entry.invocations,
        "downloads": entry.downloads,
        "loads": entry.loads,
        "unloads": entry.unloads,
        "evictions": evictions,
        "in_flight": entry.pins,
        "last_error": entry.last_error,
        "artifact_changed": changed,
    }


@dataclass(frozen=True)
class AdminViews:
    """What `/_mme/*`, `/ping` and `/metrics` show of one running endpoint."""

    settings: EmulatorSettings
    cache: ModelCache
    store: ModelStore
    metrics: Metrics
    server: ModelServer
    probes: ServerProbes
    s3_endpoint_url: str | None
    model_data_url: str
    cache_dir: Path
    runtime_running: Callable[[], bool]

    def healthy(self) -> bool:
        return self.runtime_running()

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    async def models(self) -> list[dict[str, Any]]:
        """Every object under the prefix with its state, least recently used first."""
        stored = await asyncio.to_thread(self.store.list_models)
        sizes = {item.target_model: item.size for item in stored}
        etags = {item.target_model: item.etag for item in stored}
        entries = self.cache.entries()
        known = {entry.target_model for entry in entries}
        # Objects never requested show as fresh entries: remote, all counts zero.
        entries += [
            ModelEntry(target, model_hash(target))
            for target in sorted(sizes)
            if target not in known
        ]
        evicted = Counter(e.target_model for e in self.cache.evictions)
        return [
            model_row(
                entry,
                sizes.get(entry.target_model),
                evicted[entry.target_model],
                etags.get(entry.target_model),
            )
            for entry in entries
        ]

    def evictions(self) -> list[dict[str, Any]]:
        return [
            {
                "target_model": e.target_model,
                "reason": e.reason,
                "idle_s": round(e.idle_s, 3),
                "at": _iso(e.at),
                "freed_memory_bytes": e.freed_memory_bytes,
                "deleted_from_disk": e.deleted_from_disk,
            }
            for e in self.cache.evictions
        ]

    async def status(self) -> dict[str, Any]:
        settings = self.settings
        host_memory = await asyncio.to_thread(self.probes.host_memory)
        return {
            "endpoint_name": settings.endpoint_name,
            "model_data_url": self.model_data_url,
            "s3_endpoint_url": self.s3_endpoint_url,
            "runtime": settings.runtime,
            "runtime_running": self.runtime_running(),
            "triton_url": self.server.url,
            "triton_version": self.server.version,
            # The cloud release imitated, and whether its model-list mutex is played.
            "imitated_triton_release": settings.triton_version,
            "unload_blocks_invokes": settings.unloads_block_invokes(),
            "invocations_held_by_unload": self.metrics.held_by_unload_count(),
            "cache_dir": str(self.cache_dir),
            "loaded_models": self.cache.loaded_count(),
            "max_loaded_models": settings.max_loaded_models,
            "host_memory_bytes": host_memory,
            "host_memory_budget_bytes": settings.host_memory_budget(),
            "gpu_memory_bytes": (
                await asyncio.to_thread(self.probes.gpu_memory)
                if self.probes.measures_gpu
                else None
            ),
            "gpu_memory_budget_bytes": settings.gpu_memory_budget(),
            "disk_bytes": self.cache.disk_bytes(),
            "disk_budget_bytes": settings.disk_budget(),
            # Requests for names that never reached the disk (e.g. no such object): counted,
            # not kept as models, as SageMaker keeps nothing for them.
            "requests_for_models_never_downloaded": self.cache.machine.forgotten,
        }
