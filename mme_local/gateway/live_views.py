"""What the live page shows, as plain data (no HTTP): models, budgets, timeline, logs, warnings.

Everything is read from the cache, the recorder and a listing of the store; nothing is
changed. The store's listing is cached for `StoreListing.ttl_s` and refreshed in a thread,
so an open page costs no S3 traffic per refresh. Model rows are arrays under one list of
field names (a thousand rows with their keys repeated would take several times as long to
encode).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import CacheMachine
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
        "seq": event.seq,
    }


MODEL_FIELDS = (
    "target_model",
    "state",
    "size_bytes",
    "disk_bytes",
    "memory_bytes",
    "gpu_memory_bytes",
    "last_used",
    "invocations",
    "downloads",
    "loads",
    "unloads",
    "in_flight",
    "last_error",
    "artifact_changed",
    "cold_starts",
    "not_ready",
    "warm_p50_ms",
    "warm_p99_ms",
)
"""The columns of `/_mme/live/models`: those of `/_mme/models` (`last_used` in epoch seconds;
`gpu_memory_bytes`, the GPU memory the cache measured for the model, is null where GPUs are not
measured), then what the recorder counts per model."""

EVICTIONS_SHOWN = 500
"""The newest evictions sent with each state (what the page's log shows): the state stays the
same size however long the log is; `/_mme/evictions` has all the cache keeps."""

# States in which a model holds memory in the model server (as `/_mme/models` shows it).
_RESIDENT = (ModelState.LOADED, ModelState.UNLOADING)

CHUNK_ROWS = 250
"""Rows per json.dumps call: the encoder holds the GIL for a whole call, so a thousand rows
are encoded in several calls and the event loop gets its turn between them."""


def _untouched(target: str, size: int) -> list[Any]:
    remote = ModelState.REMOTE.value
    return [target, remote, size, 0, None, None, None, 0, 0, 0, 0, 0, None, False, 0, 0, None, None]


def _encode(rows: list[list[Any]], untouched: list[str]) -> bytes:
    """The JSON document, built from chunks and the listing's rows encoded beforehand."""
    parts = [
        json.dumps(rows[i : i + CHUNK_ROWS], separators=(",", ":"))[1:-1]
        for i in range(0, len(rows), CHUNK_ROWS)
    ]
    parts += untouched
    fields = json.dumps(MODEL_FIELDS, separators=(",", ":"))
    body = ",".join(part for part in parts if part)
    return f'{{"fields":{fields},"rows":[{body}]}}'.encode()


@dataclass
class StoreListing:
    """The objects under the prefix, listed at most once per `ttl_s`, each object's row (as a
    model nobody has asked for) encoded once per listing."""

    store: ModelStore
    ttl_s: float = 15.0
    _rows: dict[str, str] = field(default_factory=dict)
    """TargetModel -> its JSON row, in name order."""
    _sizes: dict[str, int] = field(default_factory=dict)
    _listed_at: float | None = None
    _refresh: asyncio.Task[None] | None = None

    async def current(self) -> tuple[dict[str, int], dict[str, str]]:
        """(sizes, encoded rows) of the last listing; the first call waits for one."""
        stale = self._listed_at is None or time.monotonic() - self._listed_at > self.ttl_s
        if stale and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._list())
        if self._listed_at is None and self._refresh is not None:
            await asyncio.shield(self._refresh)
        return self._sizes, self._rows

    async def _list(self) -> None:
        try:
            self._sizes, self._rows = await asyncio.to_thread(self._list_and_encode)
        finally:
            self._listed_at = time.monotonic()
            self._refresh = None

    def _list_and_encode(self) -> tuple[dict[str, int], dict[str, str]]:
        stored: list[StoredModel] = self.store.list_models()
        sizes = {item.target_model: item.size for item in stored}
        rows = {
            target: json.dumps(_untouched(target, sizes[target]), separators=(",", ":"))
            for target in sorted(sizes)
        }
        return sizes, rows


@dataclass(frozen=True)
class Reservations:
    """Models loaded and loading, and the memory the loading ones hold, in one pass."""

    loaded: int
    loading: int
    """Models being loaded: they count against `max_loaded_models` (the cache's `occupying`)."""
    loading_host: int
    loading_gpu: int

    @classmethod
    def of(cls, machine: CacheMachine) -> Reservations:
        loaded = loading = host = gpu = 0
        for entry in machine.models.values():
            if entry.state is ModelState.LOADED:
                loaded += 1
            elif entry.state is ModelState.LOADING:
                loading += 1
                # Held from the load's licence (after its slot) to its end.
                if entry.holds_memory:
                    host += entry.memory_bytes
                    gpu += entry.gpu_bytes
        return cls(loaded, loading, host, gpu)


def _bar(
    name: str,
    unit: str,
    used: int | None,
    reserved: int | None,
    limit: int | None,
    note: str | None,
) -> Json:
    return {
        "name": name,
        "unit": unit,
        "used": used,
        "reserved": reserved,
        "limit": limit,
        "note": note,
    }


def _queued(count: int, what: str) -> str | None:
    return f"{count} {what}{'s' if count != 1 else ''} queued" if count else None


def _leaving(freeing: int) -> str | None:
    return f"{_mib(freeing)} being freed by unloads in flight" if freeing else None


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _join(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


@dataclass(frozen=True)
class LiveViews:
    """The live page's data for one instance of a running endpoint."""

    endpoint_name: str
    runtime: str
    cache: ModelCache
    recorder: LiveRecorder
    listing: StoreListing
    open_port: Callable[[], int | None]
    """Triton's SageMaker port when it listens on every interface (see serving.py)."""
    runtime_running: Callable[[], bool]
    instance: int = 0
    """Which of the endpoint's instances this shows."""
    instances: int = 1
    """How many instances the endpoint has."""

    async def models_json(self) -> bytes:
        """`{"fields": MODEL_FIELDS, "rows": [...]}`: every model the cache knows, least
        recently used first, then the listed objects it doesn't know, by name.

        The rows are read on the event loop (a few microseconds each) and encoded in a thread.
        """
        sizes, listed = await self.listing.current()
        entries = self.cache.entries()
        known = {entry.target_model for entry in entries}
        rows = [self._row(entry, sizes.get(entry.target_model)) for entry in entries]
        untouched = [row for target, row in listed.items() if target not in known]
        return await asyncio.to_thread(_encode, rows, untouched)

    def _row(self, entry: ModelEntry, size: int | None) -> list[Any]:
        calls = self.recorder.calls.get(entry.target_model)
        warm = calls.warm_percentiles() if calls is not None else None
        # As /_mme/models: memory is shown only while the model holds it.
        resident = entry.state in _RESIDENT
        gpu = entry.gpu_bytes if resident and self.cache.machine.gpu_used is not None else None
        return [
            entry.target_model,
            entry.state.value,
            size,
            entry.disk_bytes,
            entry.memory_bytes if resident else None,
            gpu,
            round(entry.last_used_wall, 3) if entry.invocations else None,
            entry.invocations,
            entry.downloads,
            entry.loads,
            entry.unloads,
            entry.pins,
            entry.last_error,
            entry.artifact_changed,
            calls.cold_starts if calls is not None else 0,
            calls.not_ready if calls is not None else 0,
            round(warm[0] * 1000, 3) if warm else None,
            round(warm[1] * 1000, 3) if warm else None,
        ]

    def state(self, after: int = 0) -> Json:
        """Everything but the model rows: budgets, timeline, logs, warnings; of the marks,
        only those numbered above `after` (the page keeps the ones it has)."""
        recorder = self.recorder
        return {
            "endpoint_name": self.endpoint_name,
            "instance": self.instance,
            "instances": self.instances,
            "runtime": self.runtime,
            "runtime_running": self.runtime_running(),
            "now": round(time.time(), 3),
            "period_s": recorder.period_s,
            "outcomes": list(OUTCOMES),
            "gpu_measured": self.cache.machine.gpu_used is not None,
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
            "last_seq": recorder.last_seq,
            "events": [_event(e) for e in recorder.events if e.seq > after],
            "evictions": [
                {
                    "target_model": e.target_model,
                    "reason": e.reason,
                    "idle_s": round(e.idle_s, 3),
                    "at": round(e.at, 3),
                    "freed_memory_bytes": e.freed_memory_bytes,
                    "deleted_from_disk": e.deleted_from_disk,
                }
                for e in list(self.cache.evictions)[-EVICTIONS_SHOWN:]
            ],
            "restarts": [_event(e) for e in recorder.restart_log],
            "warnings": self.warnings(),
        }

    def budgets(self) -> list[Json]:
        """Each budget: what is used, what is reserved for work in flight, and the limit.

        Reservations are the cache's own (`cache.machine`), read without changing anything:
        loads in flight occupy the count budget and hold the memory measured at the model's
        last load (a model never measured holds none); downloads in flight hold their disk
        reservation. Memory used is as last measured (the timeline's); disk used is the cache's
        accounting of extracted models.
        """
        machine = self.cache.machine
        budgets = machine.budgets
        held = Reservations.of(machine)
        last = self.recorder.samples[-1] if self.recorder.samples else None
        rows: list[Json] = [
            _bar(
                "loaded models",
                "count",
                held.loaded,
                held.loading,
                budgets.max_loaded_models,
                _queued(machine.loads_waiting, "load"),
            ),
            _bar(
                "host memory",
                "bytes",
                last.host_bytes if last is not None else None,
                held.loading_host,
                budgets.host_memory_bytes,
                _leaving(machine.host_leaving),
            ),
        ]
        if last is not None and last.gpu_bytes is not None:
            # The cache checks its GPU budget against the fullest GPU: its reservation is
            # shown there.
            fullest = max(range(len(last.gpu_bytes)), key=last.gpu_bytes.__getitem__, default=0)
            rows += [
                _bar(
                    f"GPU {index} memory",
                    "bytes",
                    used,
                    held.loading_gpu if index == fullest else None,
                    budgets.gpu_memory_bytes,
                    _leaving(machine.gpu_leaving) if index == fullest else None,
                )
                for index, used in enumerate(last.gpu_bytes)
            ]
        rows.append(
            _bar(
                "disk",
                "bytes",
                machine.disk_used,
                machine.disk_reserved,
                budgets.disk_bytes,
                _join(
                    _queued(machine.downloads_waiting, "download"),
                    _leaving(machine.disk_reclaiming),
                ),
            )
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
