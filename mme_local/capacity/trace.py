"""Trace files: one JSON line per invocation, written by `up --trace`, read by `capacity plan`.

Each line: {"time": epoch seconds at arrival, "target_model", "status" (HTTP), "cache_hit"
(null when the request failed before a model was leased), "wait_s" (download and load waited
for), "model_s" (the container's answer time), "instance" (the instance that answered, null
before a lease; absent in traces of earlier versions), "routed" (the instance the request was
routed to, lease or not: a 429's too; null before routing; not read by a replay), for a cold
start "download_s" and
"load_s" (the model's own download and load, without the time queued for them; null
otherwise), and "done_s" (seconds from arrival until the request let go of its model; null
without a lease, absent in earlier traces)}.

The cache's loads and unloads are lines too: {"time": epoch seconds at the end, "loaded" (or
"unloaded"): the TargetModel, "load_s" (or "unload_s"): its own time in the container,
"instance"}; a load's also has "measure_s" (seconds until its memory was measured),
"memory_bytes" (what it measured) and "base_bytes" (the server's own memory as the cache then
counted it). A replay takes an unload's time in place of the profile's, and ends a load or
unload at its recorded end when its own reckoning lands within 50 ms of it, so the call and
the requests that end around it keep their recorded order, and measures a loaded model when
and as the live cache did (`capacity.instance`). Traces of earlier versions have no load lines
(and, earlier still, no unload lines).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from mme_local.cache.records import LoadRecord, UnloadRecord
from mme_local.capacity.errors import CapacityError
from mme_local.gateway.service import InvocationRecord


@dataclass(frozen=True)
class TraceRecord:
    time: float
    target_model: str
    status: int
    cache_hit: bool | None
    wait_s: float
    model_s: float
    download_s: float | None = None
    load_s: float | None = None
    instance: int | None = None
    done_s: float | None = None

    @property
    def reached_cache(self) -> bool:
        """Whether the request got as far as the model cache (400s are rejected before it)."""
        return self.status != 400


class TraceWriter:
    """Appends records to a file, one line each, flushed as written so Ctrl-C loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, record: InvocationRecord | TraceRecord | LoadRecord | UnloadRecord) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


@dataclass(frozen=True)
class Trace:
    """A trace file's two kinds of line: the requests in arrival order, and the loads and
    unloads in the order they ended (none in older traces)."""

    requests: list[TraceRecord]
    control_calls: list[LoadRecord | UnloadRecord]


def read_trace_file(path: Path) -> Trace:
    """The whole trace in one pass, or CapacityError naming the first bad line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise CapacityError(
            f"trace {path} is not readable ({error.strerror}); record one with `up --trace`"
        ) from None
    records: list[TraceRecord] = []
    calls: list[LoadRecord | UnloadRecord] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if "unloaded" in item or "loaded" in item:
                calls.append(_control_call(item))
            else:
                records.append(_request(item))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CapacityError(
                f"trace {path} line {number} is not a trace record ({error!s}); expected JSON "
                "with time, target_model and status (or a load or unload), as `up --trace` "
                "writes"
            ) from None
    if not records:
        raise CapacityError(f"trace {path} is empty; record traffic with `mme-local up --trace`")
    records.sort(key=lambda r: r.time)
    calls.sort(key=lambda c: c.time)
    return Trace(records, calls)


def read_trace(path: Path) -> list[TraceRecord]:
    """All requests in arrival order, or CapacityError naming the first bad line."""
    return read_trace_file(path).requests


def read_control_calls(path: Path) -> list[LoadRecord | UnloadRecord]:
    """The loads and unloads a trace recorded, in the order they ended."""
    return read_trace_file(path).control_calls


def _request(item: dict[str, Any]) -> TraceRecord:
    return TraceRecord(
        time=float(item["time"]),
        target_model=str(item["target_model"]),
        status=int(item["status"]),
        cache_hit=None if item.get("cache_hit") is None else bool(item["cache_hit"]),
        wait_s=float(item.get("wait_s", 0.0)),
        model_s=float(item.get("model_s", 0.0)),
        download_s=_seconds(item.get("download_s")),
        load_s=_seconds(item.get("load_s")),
        instance=None if item.get("instance") is None else int(item["instance"]),
        done_s=_seconds(item.get("done_s")),
    )


def _control_call(item: dict[str, Any]) -> LoadRecord | UnloadRecord:
    instance = int(item.get("instance") or 0)
    if "unloaded" in item:
        return UnloadRecord(
            float(item["time"]),
            str(item["unloaded"]),
            float(item["unload_s"]),
            instance,
        )
    memory, base = item.get("memory_bytes"), item.get("base_bytes")
    return LoadRecord(
        float(item["time"]),
        str(item["loaded"]),
        float(item["load_s"]),
        instance,
        _seconds(item.get("measure_s")),
        None if memory is None else int(memory),
        None if base is None else int(base),
    )


def _seconds(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
