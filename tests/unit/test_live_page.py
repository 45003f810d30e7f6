"""The live page's recorder, views and routes, in-process with a stand-in cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import CacheMachine, Download, Load, Probe
from mme_local.cache.policy import Budgets
from mme_local.cache.records import Eviction
from mme_local.gateway.app import Gateway, create_app
from mme_local.gateway.live_recorder import OUTCOMES, LiveRecorder, outcome_of
from mme_local.gateway.live_views import EVICTIONS_SHOWN, MODEL_FIELDS, LiveViews, StoreListing
from mme_local.gateway.service import InvocationRecord
from mme_local.gateway.sigv4 import SigV4Verifier, require_sigv4
from mme_local.store.source import StoredModel
from tests.unit.test_gateway import FakeAdmin, FakeService


class FakeCache:
    """What the recorder and views read of the cache, over a real `CacheMachine`: tests drive
    the machine through its events, or put entries straight into it for the recorder."""

    def __init__(
        self,
        models: list[ModelEntry] | None = None,
        budgets: Budgets | None = None,
        keep_evictions: int = 3,
        track_gpu: bool = False,
    ) -> None:
        self.machine = CacheMachine(
            budgets or Budgets(2, 8 << 30, 100 << 20, 1 << 30),
            keep_evictions=keep_evictions,
            track_gpu=track_gpu,
        )
        for entry in models or []:
            self.add(entry)

    def add(self, entry: ModelEntry) -> None:
        self.machine.models[entry.target_model] = entry

    @property
    def budgets(self) -> Budgets:
        return self.machine.budgets

    @property
    def evictions(self) -> deque[Eviction]:
        return self.machine.evictions

    def entries(self) -> list[ModelEntry]:
        return list(self.machine)

    def disk_bytes(self) -> int:
        return self.machine.disk_used


class FakeStore:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.listings = 0

    def list_models(self) -> list[StoredModel]:
        self.listings += 1
        return [StoredModel(n, 100, None, None) for n in self.names]  # type: ignore[arg-type]


def _record(target: str, status: int, hit: bool | None, model_s: float = 0.001) -> InvocationRecord:
    return InvocationRecord(time.time(), target, status, hit, 0.0, model_s)


def _recorder(cache: FakeCache, running: list[bool] | None = None) -> LiveRecorder:
    flags = running if running is not None else [True]
    restarts = [0.0]
    recorder = LiveRecorder(
        cache,  # type: ignore[arg-type]
        restarts=lambda: restarts[0],
        runtime_running=lambda: flags[0],
        period_s=1.0,
        keep_s=5.0,
    )
    recorder.restarts_counter = restarts  # type: ignore[attr-defined]
    return recorder


def _entry(name: str, state: ModelState = ModelState.LOADED, loads: int = 1) -> ModelEntry:
    entry = ModelEntry(name, name)
    entry.state, entry.loads, entry.invocations = state, loads, 1
    return entry


def test_outcomes_split_hits_cold_starts_429s_and_errors() -> None:
    assert outcome_of(_record("a", 200, True)) == "hit"
    assert outcome_of(_record("a", 200, False)) == "cold"
    assert outcome_of(_record("a", 429, None)) == "not_ready"
    assert outcome_of(_record("a", 424, True)) == "error"
    assert outcome_of(_record("a", 400, None)) == "error"


records = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3", "junk"]),
        st.sampled_from([200, 400, 424, 429, 500, 503]),
        st.sampled_from([True, False, None]),
        st.integers(0, 3),  # samples taken before this record
    ),
    max_size=60,
)


@given(records)
def test_every_request_is_counted_once_in_some_sample(steps: list[Any]) -> None:
    recorder = _recorder(FakeCache())
    recorder.samples = deque()  # keep them all for the check
    expected = dict.fromkeys(OUTCOMES, 0)
    for target, status, hit, samples_before in steps:
        for _ in range(samples_before):
            recorder.sample(time.time())
        record = _record(target, status, hit)
        recorder.observe(record)
        expected[outcome_of(record)] += 1
    recorder.sample(time.time())
    totals = [sum(s.requests[i] for s in recorder.samples) for i in range(len(OUTCOMES))]
    assert totals == [expected[o] for o in OUTCOMES]
    # Per model: only what reached the cache (a lease, or a 429 while it loads).
    for target, calls in recorder.calls.items():
        leased = [s for s in steps if s[0] == target and (s[2] is not None or s[1] == 429)]
        assert calls.cold_starts == sum(1 for s in leased if s[1] == 200 and s[2] is False)
        assert calls.not_ready == sum(1 for s in leased if s[1] == 429)


def test_per_model_calls_are_bounded_and_warm_percentiles_follow_hits() -> None:
    recorder = LiveRecorder(
        FakeCache(),  # type: ignore[arg-type]
        restarts=lambda: 0.0,
        runtime_running=lambda: True,
        max_models=2,
    )
    for name in ("a", "b", "a", "c"):
        recorder.observe(_record(name, 200, False))
    assert list(recorder.calls) == ["a", "c"]  # the least recently called is dropped
    for ms in range(1, 101):
        recorder.observe(_record("c", 200, True, ms / 1000))
    p50, p99 = recorder.calls["c"].warm_percentiles() or (0, 0)
    assert (round(p50 * 1000), round(p99 * 1000)) == (50, 100)
    assert recorder.calls["a"].warm_percentiles() is None


def test_loads_evictions_and_restarts_become_marks_once() -> None:
    cache = FakeCache()
    running = [True]
    recorder = _recorder(cache, running)
    recorder.sample(1.0)
    cache.add(_entry("a"))
    recorder.sample(2.0)
    cache.evictions.append(Eviction("a", "max loaded models (1)", 3.5, 2.5, 10 << 20, False))
    cache.evictions.append(Eviction("b", "disk budget", 9.0, 2.6, 0, True))
    recorder.sample(3.0)
    recorder.sample(4.0)  # nothing new: no repeated marks
    running[0] = False
    recorder.restarts_counter[0] = 1.0  # type: ignore[attr-defined]
    recorder.sample(5.0)
    running[0] = True
    recorder.sample(6.0)
    marks = [(e.kind, e.target_model, e.reason) for e in recorder.events]
    assert marks == [
        ("load", "a", "requested"),
        ("eviction", "a", "max loaded models (1); idle 3.5 s"),
        ("deleted from disk", "b", "disk budget; idle 9.0 s; deleted from disk"),
        ("runtime down", None, "the model server died; nothing is loaded"),
        ("runtime restart", None, "1 restart attempt(s)"),
        ("runtime up", None, "the model server answers again"),
    ]
    assert [e.kind for e in recorder.restart_log] == [
        "runtime down",
        "runtime restart",
        "runtime up",
    ]
    # The eviction log is a ring: a full one that moves on still gives only the new records.
    for i in range(3):
        cache.evictions.append(Eviction(f"x{i}", "host memory budget", 1.0, 7.0, 1, False))
    recorder.sample(7.0)
    assert [e.target_model for e in recorder.events][-4:] == [None, "x0", "x1", "x2"]
    assert len(recorder.samples) == 5  # keep_s / period_s


def test_failed_load_is_marked_with_its_error() -> None:
    cache = FakeCache()
    recorder = _recorder(cache)
    entry = _entry("bad", ModelState.ON_DISK, loads=0)
    cache.add(entry)
    recorder.sample(1.0)
    entry.last_error = "container answered 400: bad config"
    recorder.sample(2.0)
    assert [(e.kind, e.reason) for e in recorder.events] == [
        ("load failed", "container answered 400: bad config")
    ]


def _objects(document: bytes) -> list[dict[str, Any]]:
    table = json.loads(document)
    assert table["fields"] == list(MODEL_FIELDS)
    return [dict(zip(table["fields"], row, strict=True)) for row in table["rows"]]


def _views(
    cache: FakeCache,
    store: FakeStore,
    recorder: LiveRecorder,
    instance: int = 0,
    instances: int = 1,
    listing: StoreListing | None = None,
) -> LiveViews:
    return LiveViews(
        endpoint_name="local-mme",
        runtime="embedded",
        cache=cache,  # type: ignore[arg-type]
        recorder=recorder,
        listing=listing or StoreListing(store),  # type: ignore[arg-type]
        open_port=lambda: 9999,
        runtime_running=lambda: True,
        instance=instance,
        instances=instances,
    )


async def test_models_rows_join_cache_recorder_and_store_listing_once() -> None:
    cache = FakeCache()
    loaded = _entry("a")
    loaded.disk_bytes, loaded.memory_bytes, loaded.artifact_changed = 50, 70, True
    loading = _entry("b", ModelState.LOADING, loads=0)
    cache.add(loaded)
    cache.add(loading)
    store = FakeStore(["a", "b", "c"])
    recorder = _recorder(cache)
    recorder.observe(_record("a", 200, False))
    recorder.observe(_record("a", 200, True, 0.004))
    views = _views(cache, store, recorder)
    rows = {r["target_model"]: r for r in _objects(await views.models_json())}
    await views.models_json()
    assert store.listings == 1  # cached: an open page costs no S3 listing per refresh
    assert rows["a"]["cold_starts"] == 1 and rows["a"]["warm_p50_ms"] == 4.0
    assert rows["a"]["memory_bytes"] == 70 and rows["a"]["size_bytes"] == 100
    assert rows["c"]["state"] == "remote" and rows["c"]["invocations"] == 0
    recorder.sample(time.time())
    state = views.state()
    budgets = {b["name"]: b for b in state["budgets"]}
    assert budgets["loaded models"] == {
        "name": "loaded models",
        "unit": "count",
        "used": 1,
        "reserved": 1,
        "limit": 2,
        "note": None,
    }
    assert budgets["disk"]["limit"] == 100 << 20
    assert any("9999" in w for w in state["warnings"])
    assert any("changed in s3" in w.lower() and "a" in w for w in state["warnings"])
    assert len(state["samples"][0]) == len(state["sample_fields"])


def _app(views: LiveViews | list[LiveViews] | None, signed: bool = False) -> httpx.AsyncClient:
    shown = views if isinstance(views, list) else [] if views is None else [views]
    gateway = Gateway(FakeService(ValueError()), FakeAdmin(), live=shown)  # type: ignore[arg-type]
    app = create_app(lambda: gateway)
    if signed:
        app = require_sigv4(app, SigV4Verifier("local", "secret", "us-east-1"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_page_and_views_need_no_signature_under_require_sigv4() -> None:
    cache = FakeCache([_entry("a")])
    views = _views(cache, FakeStore(["a"]), _recorder(cache))
    async with _app(views, signed=True) as client:
        page = await client.get("/_mme/")
        assert page.status_code == 200 and "MMECharts" in page.text
        assert "/*SCRIPT*/" not in page.text and "/*STYLE*/" not in page.text
        state = await client.get("/_mme/live/state")
        assert state.status_code == 200 and state.json()["endpoint_name"] == "local-mme"
        models = await client.get("/_mme/live/models")
        assert [r["target_model"] for r in _objects(models.content)] == ["a"]
        assert models.headers["cache-control"] == "no-store"
        # Invocations still need a signature: only the read-only views are open.
        refused = await client.post("/endpoints/local-mme/invocations", content=b"x")
        assert refused.status_code == 403


async def test_no_views_no_page() -> None:
    async with _app(None) as client:
        assert (await client.get("/_mme/")).status_code == 404
        assert (await client.get("/_mme/live/state")).status_code == 404


async def test_each_instance_is_shown_on_its_own_and_a_wrong_one_is_named() -> None:
    first, second = FakeCache([_entry("a")]), FakeCache([_entry("b", ModelState.LOADING)])
    store = FakeStore(["a", "b"])
    listing = StoreListing(store)  # type: ignore[arg-type]
    views = [
        _views(cache, store, _recorder(cache), index, 2, listing)
        for index, cache in enumerate((first, second))
    ]
    async with _app(views) as client:
        state = (await client.get("/_mme/live/state?instance=1")).json()
        assert (state["instance"], state["instances"]) == (1, 2)
        bars = {b["name"]: b for b in state["budgets"]}
        assert (bars["loaded models"]["used"], bars["loaded models"]["reserved"]) == (0, 1)
        assert (await client.get("/_mme/live/state")).json()["instance"] == 0, "default: 0"
        rows = _objects((await client.get("/_mme/live/models?instance=1")).content)
        assert [(r["target_model"], r["state"]) for r in rows] == [
            ("b", "loading"),
            ("a", "remote"),
        ]
        for wrong in ("2", "-1", "x", ""):
            for view in ("state", "models"):
                refused = await client.get(f"/_mme/live/{view}?instance={wrong}")
                assert refused.status_code == 400, (view, wrong)
                assert refused.json()["message"] == (
                    "instance must be one of 0 to 1 (the endpoint has 2)"
                )
    assert store.listings == 1, "the instances share one listing of the store"


async def test_many_models_encode_in_chunks_in_order() -> None:
    cache = FakeCache([_entry(f"known-{i:04d}") for i in range(600)])
    listed = [f"known-{i:04d}" for i in range(0, 600, 2)] + [f"new-{i:04d}" for i in range(300)]
    views = _views(cache, FakeStore(listed), _recorder(cache))
    rows = _objects(await views.models_json())
    names = [r["target_model"] for r in rows]
    assert names == [f"known-{i:04d}" for i in range(600)] + [f"new-{i:04d}" for i in range(300)]
    assert rows[0]["size_bytes"] == 100 and rows[1]["size_bytes"] is None


async def test_each_measured_gpu_gets_its_budget_bar_and_memory_in_the_timeline() -> None:
    cache = FakeCache(
        [_entry("a")], Budgets(None, 8 << 30, None, 1 << 30, gpu_memory_bytes=24 << 30)
    )
    recorder = LiveRecorder(
        cache,  # type: ignore[arg-type]
        restarts=lambda: 0.0,
        runtime_running=lambda: True,
        host_memory=lambda: 3 << 30,
        gpu_memory=lambda: [5 << 30, 7 << 30],
    )
    await recorder.measure()
    recorder.sample(time.time())
    state = _views(cache, FakeStore([]), recorder).state()
    bars = {b["name"]: (b["used"], b["limit"]) for b in state["budgets"]}
    assert bars["GPU 0 memory"] == (5 << 30, 24 << 30)
    assert bars["GPU 1 memory"] == (7 << 30, 24 << 30)
    assert bars["host memory"] == (3 << 30, 8 << 30)
    assert bars["loaded models"] == (1, None) and bars["disk"] == (0, None)
    fields = state["sample_fields"]
    assert state["samples"][-1][fields.index("gpu_bytes")] == [5 << 30, 7 << 30]


async def test_marks_are_numbered_and_sent_once() -> None:
    cache = FakeCache()
    recorder = _recorder(cache)
    views = _views(cache, FakeStore([]), recorder)
    cache.add(_entry("a"))
    recorder.sample(1.0)
    cache.evictions.append(Eviction("a", "max loaded models (1)", 1.0, 1.5, 1, False))
    recorder.sample(2.0)
    first = views.state()
    assert [e["seq"] for e in first["events"]] == [1, 2] and first["last_seq"] == 2
    assert views.state(after=1)["events"] == first["events"][1:]
    assert views.state(after=2)["events"] == []
    async with _app(views) as client:
        answer = await client.get("/_mme/live/state?after=1")
        assert [e["seq"] for e in answer.json()["events"]] == [2]
        assert (await client.get("/_mme/live/state?after=x")).status_code == 400


# ----- budgets with the cache's reservations, driven through the real state machine -----------

MIB = 1 << 20


def _drive_to_loaded(
    machine: CacheMachine, request: int, name: str, disk: int, host: int, gpu: int | None = None
) -> ModelEntry:
    """REMOTE -> LOADED through the machine's own events, then measured and idle."""
    entry = machine.request(request, name)
    if Probe(entry) in machine.outbox:  # only under a disk budget
        machine.probed(entry, disk)
    machine.downloaded(entry, disk, etag="e")
    machine.loaded(entry)
    machine.measured(entry, host, gpu)
    machine.done(entry)
    machine.outbox.clear()
    return entry


def test_budget_bars_show_what_downloads_and_loads_in_flight_reserve() -> None:
    cache = FakeCache(budgets=Budgets(3, 8 << 30, 1 << 30, 1 << 30), track_gpu=True)
    machine = cache.machine
    hot = _drive_to_loaded(machine, 1, "hot", 20 * MIB, 300 * MIB, 500 * MIB)
    cold = _drive_to_loaded(machine, 2, "cold", 30 * MIB, 200 * MIB, 400 * MIB)
    # Unloading `cold` (as after a 507 on invoke): its memory is on its way out.
    assert machine.make_room(hot, "container answered 507 on invoke") is cold
    recorder = _recorder(cache)
    recorder.sample(1.0)
    views = _views(cache, FakeStore([]), recorder)
    host = {b["name"]: b for b in views.state()["budgets"]}["host memory"]
    assert host["reserved"] == 0
    assert host["note"] == "200.0 MiB being freed by unloads in flight"
    # As /_mme/models: an unloading model still holds its memory until its unload ends.
    rows = {r["target_model"]: r for r in _objects(await_(views.models_json()))}
    assert (rows["cold"]["state"], rows["cold"]["memory_bytes"]) == ("unloading", 200 * MIB)
    assert rows["cold"]["gpu_memory_bytes"] == 400 * MIB
    machine.unloaded(cold)
    # `cold` again: the load holds the memory measured at its last load until it ends.
    machine.request(3, "cold")
    assert any(isinstance(c, Load) and c.entry is cold for c in machine.outbox)
    # A new model: its download holds its archive's size plus a quarter and 1 MiB of disk.
    fresh = machine.request(4, "fresh")
    assert [c for c in machine.outbox if isinstance(c, Probe)] == [Probe(fresh)]
    machine.probed(fresh, 40 * MIB)
    assert any(isinstance(c, Download) and c.entry is fresh for c in machine.outbox)

    bars = {b["name"]: b for b in views.state()["budgets"]}
    assert (bars["loaded models"]["used"], bars["loaded models"]["reserved"]) == (1, 1)
    assert bars["host memory"]["reserved"] == 200 * MIB
    assert bars["host memory"]["note"] is None
    assert bars["disk"]["used"] == 50 * MIB
    assert bars["disk"]["reserved"] == 40 * MIB + 10 * MIB + MIB == machine.disk_reserved
    rows = {r["target_model"]: r for r in _objects(await_(views.models_json()))}
    assert rows["hot"]["gpu_memory_bytes"] == 500 * MIB
    assert rows["hot"]["memory_bytes"] == 300 * MIB
    # Loading: it holds nothing in the model server yet (its reservation is in the bars).
    assert rows["cold"]["memory_bytes"] is None and rows["cold"]["gpu_memory_bytes"] is None
    assert rows["fresh"]["gpu_memory_bytes"] is None

    # Once the work ends the reservations are gone and the memory is the models' own.
    machine.loaded(cold)
    machine.downloaded(fresh, 45 * MIB, etag="f")
    bars = {b["name"]: b for b in views.state()["budgets"]}
    assert bars["disk"]["reserved"] == 0 and bars["disk"]["used"] == 95 * MIB
    assert bars["host memory"]["reserved"] == 0  # `fresh` loads next, never measured: none


def test_gpu_reservations_go_on_the_fullest_gpu_and_gpu_memory_is_hidden_without_gpus() -> None:
    cache = FakeCache(budgets=Budgets(None, None, None, 1 << 30, 24 << 30), track_gpu=True)
    machine = cache.machine
    model = _drive_to_loaded(machine, 1, "m", MIB, 100 * MIB, 700 * MIB)
    keep = _drive_to_loaded(machine, 2, "keep", MIB, 100 * MIB, 100 * MIB)
    machine.make_room(keep, "test")
    machine.unloaded(model)
    machine.request(3, "m")
    recorder = LiveRecorder(
        cache,  # type: ignore[arg-type]
        restarts=lambda: 0.0,
        runtime_running=lambda: True,
        gpu_memory=lambda: [2 << 30, 9 << 30],
    )
    asyncio.run(recorder.measure())
    recorder.sample(1.0)
    state = _views(cache, FakeStore([]), recorder).state()
    assert state["gpu_measured"] is True
    bars = {b["name"]: b for b in state["budgets"]}
    assert (bars["GPU 0 memory"]["used"], bars["GPU 0 memory"]["reserved"]) == (2 << 30, None)
    assert (bars["GPU 1 memory"]["used"], bars["GPU 1 memory"]["reserved"]) == (9 << 30, 700 * MIB)

    without = FakeCache([_entry("a")])
    assert _views(without, FakeStore([]), _recorder(without)).state()["gpu_measured"] is False
    rows = _objects(await_(_views(without, FakeStore([]), _recorder(without)).models_json()))
    assert rows[0]["gpu_memory_bytes"] is None


def await_(work: Coroutine[Any, Any, bytes]) -> bytes:
    return asyncio.run(work)


# ----- 1,000 models: what one refresh carries stays small ---------------------------------------


def _thousand(count: int) -> tuple[FakeCache, LiveRecorder]:
    """`count` loaded models with every per-model field filled in, and a full eviction log."""
    cache = FakeCache(keep_evictions=1000)
    recorder = _recorder(cache)
    for i in range(count):
        entry = _entry(f"tenant-{i:05d}/bert-base-uncased.tar.gz")
        entry.disk_bytes, entry.memory_bytes = 420 << 20, 450 << 20
        entry.last_used_wall, entry.artifact_changed = time.time(), True
        entry.last_error = "container answered 400: failed to load the model: " + "x" * 100
        cache.add(entry)
        for ms in (3, 4, 5):
            recorder.observe(_record(entry.target_model, 200, True, ms / 1000))
    for i in range(1000):
        cache.evictions.append(
            Eviction(f"tenant-{i:05d}", "host memory budget", 1.0, 1.0, 1, False)
        )
    return cache, recorder


async def test_a_thousand_models_cost_a_few_hundred_bytes_each_and_leave_the_state_alone() -> None:
    sizes, states, first = {}, {}, {}
    for count in (1, 1000):
        cache, recorder = _thousand(count)
        recorder.sample(time.time())
        views = _views(cache, FakeStore([]), recorder)
        sizes[count] = len(await views.models_json())
        # A refresh asks only for marks it hasn't got; the first one gets the ring's.
        states[count] = len(json.dumps(views.state(after=recorder.last_seq)))
        opening = views.state()
        first[count] = len(opening["events"])
        assert len(opening["evictions"]) == EVICTIONS_SHOWN
    # Rows are arrays under one list of names: about 350 bytes for a row with an error text.
    assert (sizes[1000] - sizes[1]) / 999 < 400
    # A refresh's state (budgets, timeline, logs, warnings) doesn't grow with the models: the
    # changed-in-S3 warning names ten, the eviction log sends its newest EVICTIONS_SHOWN.
    assert abs(states[1000] - states[1]) < 1000
    assert first[1000] <= 2000  # the ring of marks


def test_bar_captions_name_queued_work() -> None:
    cache = FakeCache(budgets=Budgets(None, None, 1 << 30, 1 << 30))
    cache.machine = CacheMachine(
        cache.budgets, max_parallel_downloads=1, max_parallel_loads=1, keep_evictions=3
    )
    machine = cache.machine
    for request, name in enumerate(("a", "b", "c")):
        machine.probed(machine.request(request, name), MIB)
    views = _views(cache, FakeStore([]), _recorder(cache))
    bars = {b["name"]: b for b in views.state()["budgets"]}
    assert bars["disk"]["note"] == "2 downloads queued"
    assert bars["disk"]["reserved"] == 3 * (MIB + MIB // 4 + MIB)  # reserved before the slot
    for name in ("a", "b"):
        machine.downloaded(machine.models[name], MIB, etag="e")
    bars = {b["name"]: b for b in views.state()["budgets"]}
    assert bars["loaded models"]["note"] == "1 load queued"
    assert (bars["loaded models"]["used"], bars["loaded models"]["reserved"]) == (0, 2)
    assert bars["disk"]["note"] is None and bars["disk"]["reserved"] == MIB + MIB // 4 + MIB
