"""What the live page shows, as plain data (no HTTP): models, budgets, timeline, logs, warnings.

Everything is read from the cache, the recorder and a listing of the store; nothing is
changed. The store's listing is cached for `listing_ttl_s` and refreshed in a thread, so an
open page costs no S3 traffic per refresh. Each model row has the fields `/_mme/models`
gives (with `last_used` in epoch seconds) plus what the recorder counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.manager import ModelCache
from mme_local.gateway.live_recorder import OUTCOMES, Event, LiveRecorder
from mme_local.store.source import ModelStore, StoredModel

Json = dict[str, Any]


def _event(event: Event) -> Json:
    return {
        "at": round(event.at, 3),
        "kind": event.kind,
        "target_model": event.target_model,
        "reason": event.reason,
    }


@dataclass
class StoreListing:
    """The objects under the prefix, listed at most once per `ttl_s`."""

    store: ModelStore
    ttl_s: float = 15.0
    _models: dict[str, int] = field(default_factory=dict)
    _listed_at: float | None = None
    _refresh: asyncio.Task[None] | None = None

    async def sizes(self) -> dict[str, int]:
        stale = self._listed_at is None or time.monotonic() - self._listed_at > self.ttl_s
        if stale and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._list())
        if self._listed_at is None and self._refresh is not None:
            # The first view waits for the listing; later ones show the last one meanwhile.
            await asyncio.shield(self._refresh)
        return self._models

    async def _list(self) -> None:
        try:
            stored: list[StoredModel] = await asyncio.to_thread(self.store.list_models)
            self._models = {item.target_model: item.size for item in stored}
        finally:
            self._listed_at = time.monotonic()
            self._refresh = None


@dataclass(frozen=True)
class LiveViews:
    """The live page's data for one running endpoint."""

    endpoint_name: str
    runtime: str
    cache: ModelCache
    recorder: LiveRecorder
    listing: StoreListing
    open_port: Callable[[], int | None]
    """Triton's SageMaker port when it listens on every interface (see serving.py)."""
    runtime_running: Callable[[], bool]

    async def models(self) -> list[Json]:
        """Every model the cache knows, least recently used first, then the untouched ones."""
        sizes = await self.listing.sizes()
        entries = self.cache.entries()
        known = {entry.target_model for entry in entries}
        rows = [self._row(entry, sizes.get(entry.target_model)) for entry in entries]
        rows += [self._untouched(target, sizes[target]) for target in sorted(sizes.keys() - known)]
        return rows

    def _row(self, entry: ModelEntry, size: int | None) -> Json:
        calls = self.recorder.calls.get(entry.target_model)
        warm = calls.warm_percentiles() if calls is not None else None
        return {
            "target_model": entry.target_model,
            "state": entry.state.value,
            "size_bytes": size,
            "disk_bytes": entry.disk_bytes,
            "memory_bytes": entry.memory_bytes,
            "last_used": round(entry.last_used_wall, 3) if entry.invocations else None,
            "invocations": entry.invocations,
            "downloads": entry.downloads,
            "loads": entry.loads,
            "unloads": entry.unloads,
            "in_flight": entry.pins,
            "last_error": entry.last_error,
            "artifact_changed": entry.artifact_changed,
            "cold_starts": calls.cold_starts if calls is not None else 0,
            "not_ready": calls.not_ready if calls is not None else 0,
            "warm_p50_ms": round(warm[0] * 1000, 3) if warm else None,
            "warm_p99_ms": round(warm[1] * 1000, 3) if warm else None,
        }

    @staticmethod
    def _untouched(target: str, size: int) -> Json:
        return {
            "target_model": target,
            "state": ModelState.REMOTE.value,
            "size_bytes": size,
            "disk_bytes": 0,
            "memory_bytes": 0,
            "last_used": None,
            "invocations": 0,
            "downloads": 0,
            "loads": 0,
            "unloads": 0,
            "in_flight": 0,
            "last_error": None,
            "artifact_changed": False,
            "cold_starts": 0,
            "not_ready": 0,
            "warm_p50_ms": None,
            "warm_p99_ms": None,
        }

    def state(self) -> Json:
        """Everything but the model rows: budgets, timeline, logs, warnings."""
        recorder = self.recorder
        return {
            "endpoint_name": self.endpoint_name,
            "runtime": self.runtime,
            "runtime_running": self.runtime_running(),
            "now": round(time.time(), 3),
            "period_s": recorder.period_s,
            "outcomes": list(OUTCOMES),
            "budgets": self.budgets(),
            "samples": [
                [
                    round(s.at, 3),
                    *s.requests,
                    s.loaded,
                    s.loading,
                    s.host_bytes,
                    list(s.gpu_bytes) if s.gpu_bytes is not None else None,
                    s.disk_bytes,
                ]
                for s in recorder.samples
            ],
            "sample_fields": [
                "at",
                *OUTCOMES,
                "loaded",
                "loading",
                "host_bytes",
                "gpu_bytes",
                "disk_bytes",
            ],
            "events": [_event(e) for e in recorder.events],
            "evictions": [
                {
                    "target_model": e.target_model,
                    "reason": e.reason,
                    "idle_s": round(e.idle_s, 3),
                    "at": round(e.at, 3),
                    "freed_memory_bytes": e.freed_memory_bytes,
                    "deleted_from_disk": e.deleted_from_disk,
                }
                for e in self.cache.evictions
            ],
            "restarts": [_event(e) for e in recorder.restart_log],
            "warnings": self.warnings(),
        }

    def budgets(self) -> list[Json]:
        """Each budget with what is used and, where the cache holds it, what is reserved."""
        budgets = self.cache.budgets
        entries = self.cache.entries()
        loaded = sum(1 for e in entries if e.state is ModelState.LOADED)
        # Loading models already count against the count budget (the cache's `occupying`).
        loading = sum(1 for e in entries if e.state is ModelState.LOADING)
        last = self.recorder.samples[-1] if self.recorder.samples else None
        rows: list[Json] = [
            {
                "name": "loaded models",
                "unit": "count",
                "used": loaded,
                "reserved": loading,
                "limit": budgets.max_loaded_models,
            },
            {
                "name": "host memory",
                "unit": "bytes",
                "used": last.host_bytes if last is not None else None,
                "reserved": None,
                "limit": budgets.host_memory_bytes,
            },
        ]
        if last is not None and last.gpu_bytes is not None:
            rows += [
                {
                    "name": f"GPU {index} memory",
                    "unit": "bytes",
                    "used": used,
                    "reserved": None,
                    "limit": budgets.gpu_memory_bytes,
                }
                for index, used in enumerate(last.gpu_bytes)
            ]
        rows.append(
            {
                "name": "disk",
                "unit": "bytes",
                "used": self.cache.disk_bytes(),
                "reserved": None,
                "limit": budgets.disk_bytes,
            }
        )
        return rows

    def warnings(self) -> list[str]:
        found = []
        port = self.open_port()
        if port is not None:
            found.append(
                f"Triton's SageMaker port {port} listens on every interface without "
                "authentication (see Security in the README)."
            )
        if not self.runtime_running():
            found.append("The model server is down; requests fail fast until it restarts.")
        changed = [e.target_model for e in self.cache.entries() if e.artifact_changed]
        if changed:
            shown = ", ".join(changed[:10]) + (
                f" and {len(changed) - 10} more" if changed[10:] else ""
            )
            found.append(f"Changed in S3 since downloaded (still serving the old bytes): {shown}.")
        return found
