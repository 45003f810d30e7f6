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
class InstanceView:
    """One of the endpoint's instances, as the views show it."""

    index: int
    cache: ModelCache
    server: ModelServer
    probes: ServerProbes
    running: Callable[[], bool]


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
    instances: list[InstanceView] | None = None
    """Every instance (`up --instance-count N`); None: the one above."""

    @property
    def members(self) -> list[InstanceView]:
        if self.instances:
            return self.instances
        return [InstanceView(0, self.cache, self.server, self.probes, self.runtime_running)]

    def healthy(self) -> bool:
        """Some instance's model server answers (the gateway routes around a restarting one)."""
        return any(member.running() for member in self.members)

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    async def models(self) -> list[dict[str, Any]]:
        """Every object under the prefix with its state, least recently used first; a model
        an instance knows has one row per instance that knows it (`instance`), an object no
        instance was asked for one row with `instance` null."""
        stored = await asyncio.to_thread(self.store.list_models)
        sizes = {item.target_model: item.size for item in stored}
        etags = {item.target_model: item.etag for item in stored}
        rows: list[tuple[float, dict[str, Any]]] = []
        known: set[str] = set()
        for member in self.members:
            evicted = Counter(e.target_model for e in member.cache.evictions)
            for entry in member.cache.entries():
                known.add(entry.target_model)
                row = model_row(
                    entry,
                    sizes.get(entry.target_model),
                    evicted[entry.target_model],
                    etags.get(entry.target_model),
                )
                row["instance"] = member.index
                rows.append((entry.last_used, row))
        rows.sort(key=lambda item: item[0])
        # Objects never requested show as fresh entries: remote, all counts zero.
        for target in sorted(sizes):
            if target not in known:
                row = model_row(ModelEntry(target, model_hash(target)), sizes[target])
                row["instance"] = None
                rows.append((0.0, row))
        return [row for _, row in rows]

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
            for member in self.members
            for e in member.cache.evictions
        ]

    async def status(self) -> dict[str, Any]:
        settings = self.settings
        members = self.members
        instances = [await self._instance_status(member) for member in members]
        # With several instances the figures are the sums over them (budgets are per instance);
        # `instances` has each one's.
        host_memory = sum(item["host_memory_bytes"] for item in instances)
        return {
            "endpoint_name": settings.endpoint_name,
            "model_data_url": self.model_data_url,
            "s3_endpoint_url": self.s3_endpoint_url,
            "runtime": settings.runtime,
            "runtime_running": all(item["runtime_running"] for item in instances),
            "triton_url": self.server.url,
            "triton_version": self.server.version,
            # The cloud release imitated, and whether its model-list mutex is played.
            "imitated_triton_release": settings.triton_version,
            "unload_blocks_invokes": settings.unloads_block_invokes(),
            "invocations_held_by_unload": self.metrics.held_by_unload_count(),
            "cache_dir": str(self.cache_dir),
            "loaded_models": sum(item["loaded_models"] for item in instances),
            "max_loaded_models": settings.max_loaded_models,
            "host_memory_bytes": host_memory,
            "host_memory_budget_bytes": settings.host_memory_budget(),
            "gpu_memory_bytes": (
                await asyncio.to_thread(self.probes.gpu_memory)
                if self.probes.measures_gpu
                else None
            ),
            "gpu_memory_budget_bytes": settings.gpu_memory_budget(),
            "disk_bytes": sum(item["disk_bytes"] for item in instances),
            "disk_budget_bytes": settings.disk_budget(),
            # Requests for names that never reached the disk (e.g. no such object): counted,
            # not kept as models, as SageMaker keeps nothing for them.
            "requests_for_models_never_downloaded": sum(
                member.cache.machine.forgotten for member in members
            ),
            "instance_count": len(members),
            "instances": instances,
        }

    async def _instance_status(self, member: InstanceView) -> dict[str, Any]:
        """One instance's server and what its cache holds against its own budgets."""
        cache = member.cache
        return {
            "instance": member.index,
            "runtime_running": member.running(),
            "triton_url": member.server.url,
            "cache_dir": str(cache.cache_dir),
            "loaded_models": cache.loaded_count(),
            "loaded": sorted(e.target_model for e in cache.entries() if e.state.value in _RESIDENT),
            "host_memory_bytes": await asyncio.to_thread(member.probes.host_memory),
            "disk_bytes": cache.disk_bytes(),
        }
