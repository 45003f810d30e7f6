"""The cache under faults: transitions end consistent, nothing blocks the loop, limits hold."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from mme_local.cache.entry import ModelState
from mme_local.cache.manager import ModelCache, ModelLoadTimeout, ModelNotReady
from mme_local.cache.policy import Budgets
from mme_local.metrics import Metrics
from mme_local.metrics_reader import read_samples
from mme_local.store.source import Fetched, ObjectMissing
from tests.support import tar_gz_bytes
from tests.unit.test_cache import ARCHIVE, FakeContainer, FakeStore


def _make(
    tmp_path: Path,
    store: Any,
    container: FakeContainer | None = None,
    **options: Any,
) -> tuple[ModelCache, FakeContainer]:
    container = container or FakeContainer()
    budgets = options.pop("budgets", Budgets(None, None, None, 1 << 20))
    cache = ModelCache(
        store=store,
        client=container,  # type: ignore[arg-type]
        model_url=str,
        cache_dir=tmp_path,
        budgets=budgets,
        metrics=options.pop("metrics", Metrics()),
        memory_probe=options.pop("memory_probe", lambda: 0),
        **options,
    )
    return cache, container


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _use(cache: ModelCache, target: str) -> bool:
    async with cache.acquire(target) as lease:
        return lease.cache_hit


# ----- 2. nothing blocks the event loop -------------------------------------------------------


async def test_memory_probes_run_off_the_event_loop(tmp_path: Path) -> None:
    """A probe that blocks (nvidia-smi, /proc, docker top) must not stall other requests."""
    released = threading.Event()

    def slow_probe() -> int:
        # Only returns once the event loop has run the releasing coroutine below.
        released.wait(5)
        return 0

    cache, _ = _make(
        tmp_path,
        FakeStore(["a", "b"]),
        budgets=Budgets(None, 1 << 40, None, 1 << 20),
        memory_probe=slow_probe,
    )
    released.set()
    await _use(cache, "a")
    released.clear()

    async def release_soon() -> None:
        await asyncio.sleep(0.05)
        released.set()

    releaser = asyncio.create_task(release_soon())
    started = time.monotonic()
    await asyncio.wait_for(_use(cache, "b"), 10)
    await releaser
    assert time.monotonic() - started < 4, "the probe waited for the loop: it ran on the loop"


async def test_disk_budget_pass_is_linear(tmp_path: Path) -> None:
    """20,000 on-disk models and one more download: one pass over them, not one per victim."""
    from mme_local.cache.entry import ModelEntry

    budget = 20_000  # the new model (~16 KB with its entries) makes room by deleting thousands
    cache, _ = _make(tmp_path, FakeStore(["new"]), budgets=Budgets(None, None, budget, 1 << 20))
    machine = cache.machine
    for index in range(20_000):
        entry = machine.models[f"m{index}"] = ModelEntry(f"m{index}", f"h{index}")
        entry.state, entry.disk_bytes, entry.downloads = ModelState.ON_DISK, 1, 1
        machine._settled[entry.target_model] = entry
        machine.disk_used += 1
    passes = 0
    real = machine.policy.disk_victims

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal passes
        passes += 1
        return real(*args, **kwargs)

    machine.policy.disk_victims = counting  # type: ignore[method-assign]
    await _use(cache, "new")
    assert passes <= 3
    assert cache.disk_bytes() <= budget


async def test_event_loop_lag_is_measured() -> None:
    from mme_local.loop_lag import LoopLagMonitor

    metrics = Metrics()
    monitor = LoopLagMonitor(metrics, interval_s=0.01)
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # block the loop on purpose
    await asyncio.sleep(0.05)
    await monitor.stop()
    samples = read_samples(metrics.render().decode())
    assert samples["mme_event_loop_lag_max_seconds"] >= 0.15


# ----- 3. a cancelled download stops and leaves nothing -----------------------------------


class SlowStore:
    """Streams the archive one byte every few milliseconds, honouring close()."""

    def __init__(self) -> None:
        self.finished = threading.Event()

    def read_with(self, target_model: str, consume: Callable[[IO[bytes]], int]) -> Fetched:
        class Trickle(io.RawIOBase):
            def __init__(self) -> None:
                self.data = io.BytesIO(ARCHIVE * 1)

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                time.sleep(0.005)
                chunk = self.data.read(1)
                buffer[: len(chunk)] = chunk
                return len(chunk)

        try:
            return Fetched(consume(io.BufferedReader(Trickle(), 1)), None)
        finally:
            self.finished.set()


async def test_a_download_cancelled_at_shutdown_stops_and_leaves_nothing(tmp_path: Path) -> None:
    store = SlowStore()
    cache, _ = _make(tmp_path, store)
    request = asyncio.create_task(_use(cache, "a"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await cache.close()
    assert store.finished.is_set(), "close() waited for the extraction thread"
    assert time.monotonic() - started < 3, "the extraction noticed the cancellation"
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    await asyncio.sleep(0.2)
    assert list(tmp_path.iterdir()) == [], "no model folder came back after close()"


# ----- 4. a load that times out is unloaded and reported as such --------------------------


async def test_a_load_timeout_unloads_the_ghost_and_says_so(tmp_path: Path) -> None:
    cache, container = _make(tmp_path, FakeStore(["a"]), load_timeout_s=0.2, ready_timeout_s=5)
    container.gate.clear()  # the load never finishes
    with pytest.raises(ModelLoadTimeout, match="did not finish loading within"):
        await _use(cache, "a")
    assert container.unloads == ["a"], "the half-loaded model was unloaded"
    await cache.settle()
    entry = cache.entries()[0]
    assert entry.state is ModelState.ON_DISK and not entry.busy
    container.gate.set()
    assert await _use(cache, "a") is False


async def test_still_loading_is_not_ready_not_a_timeout(tmp_path: Path) -> None:
    cache, container = _make(tmp_path, FakeStore(["a"]), load_timeout_s=5, ready_timeout_s=0.1)
    container.gate.clear()
    with pytest.raises(ModelNotReady):
        await _use(cache, "a")
    container.gate.set()
    await cache.settle()


# ----- 5. every transition ends consistent ----------------------------------------------------


async def test_a_probe_that_raises_during_a_load_leaves_the_model_usable(tmp_path: Path) -> None:
    calls = 0

    def failing_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("probe failed")
        return 0

    cache, _ = _make(
        tmp_path,
        FakeStore(["a"]),
        budgets=Budgets(None, 1 << 40, None, 1 << 20),
        memory_probe=failing_once,
    )
    # The load itself went well: the model is served, its memory recorded as unknown.
    assert await asyncio.wait_for(_use(cache, "a"), 5) is False
    await cache.settle()
    assert cache.entries()[0].state is ModelState.LOADED
    assert await asyncio.wait_for(_use(cache, "a"), 5) is True


async def test_an_unload_cancelled_midway_leaves_no_stale_transition(tmp_path: Path) -> None:
    cache, container = _make(
        tmp_path, FakeStore(["a", "b"]), budgets=Budgets(1, None, None, 1 << 20)
    )
    await _use(cache, "a")
    container.unload_gate.clear()
    await _use(cache, "b")
    entry = next(e for e in cache.entries() if e.target_model == "a")
    assert entry.state is ModelState.UNLOADING
    cache._unloads["a"].cancel()
    await asyncio.wait_for(cache.settle(), 2)
    assert entry.state is ModelState.ON_DISK and not entry.busy
    assert cache.loaded_count() == 1


# ----- 7. extraction is capped by the disk budget and free space -------------------------


async def test_extraction_is_capped_by_the_remaining_disk_budget(tmp_path: Path) -> None:
    big = tar_gz_bytes({"m/config.pbtxt": b"", "m/1/model.py": b"x" * 50_000})

    class BigStore(FakeStore):
        def read_with(self, target_model: str, consume: Callable[[IO[bytes]], int]) -> Fetched:
            return Fetched(consume(io.BytesIO(big)), None)

    cache, _ = _make(tmp_path, BigStore(["a"]), budgets=Budgets(None, None, 10_000, 1 << 30))
    with pytest.raises(OSError, match="does not fit in the disk budget"):
        await _use(cache, "a")
    assert cache.entries() == []
    assert list(tmp_path.iterdir()) == []


async def test_extraction_is_capped_by_free_disk_space(tmp_path: Path) -> None:
    cache, _ = _make(tmp_path, FakeStore(["a"]), free_disk_bytes=lambda: 10)
    with pytest.raises(OSError, match="free disk space"):
        await _use(cache, "a")
    assert list(tmp_path.iterdir()) == []


# ----- 8. unknown names don't grow memory without bound ------------------------------------


async def test_requests_for_missing_models_do_not_grow_the_cache_forever(tmp_path: Path) -> None:
    cache, _ = _make(tmp_path, FakeStore([]))
    for index in range(500):
        with pytest.raises(ObjectMissing):
            await _use(cache, f"random-{index}")
    assert cache.entries() == [], "SageMaker keeps nothing for a name it could not find"
    assert cache.machine.forgotten == 500


def test_the_per_model_label_set_is_bounded() -> None:
    metrics = Metrics(max_model_labels=3)
    for index in range(10):
        metrics.count_model_invocation(f"m{index}")
    metrics.count_model_invocation("m0")
    samples = read_samples(metrics.render().decode())
    labelled = [k for k in samples if k.startswith("mme_model_invocations_total{")]
    assert len(labelled) == 4
    assert samples['mme_model_invocations_total{target_model="m0"}'] == 2
    assert samples['mme_model_invocations_total{target_model="other"}'] == 7


# ----- 13. with the model cache disabled, a model loaded for nobody goes away --------------


async def test_disabled_cache_unloads_a_model_whose_requests_timed_out(tmp_path: Path) -> None:
    cache, container = _make(tmp_path, FakeStore(["a"]), cache_enabled=False, ready_timeout_s=0.05)
    container.gate.clear()
    with pytest.raises(ModelNotReady):
        await _use(cache, "a")
    container.gate.set()
    await asyncio.sleep(0.05)
    await cache.settle()
    assert container.unloads == ["a"]
    assert cache.entries()[0].state is ModelState.REMOTE
    assert list(tmp_path.iterdir()) == []


# ----- 14. per-model memory, even with transitions overlapping -----------------------------


async def test_memory_is_measured_per_model_where_the_runtime_can_tell(tmp_path: Path) -> None:
    cache, container = _make(
        tmp_path,
        FakeStore(["a", "b"]),
        budgets=Budgets(1, None, None, 1 << 20),
        model_memory_probe=lambda name: 123,
    )
    await _use(cache, "a")
    container.unload_gate.clear()  # a's unload overlaps b's load
    await _use(cache, "b")
    container.unload_gate.set()
    await cache.settle()
    assert {e.target_model: e.memory_bytes for e in cache.entries()} == {"a": 123, "b": 123}


async def test_memory_deltas_are_not_taken_across_overlapping_transitions(
    tmp_path: Path,
) -> None:
    container = FakeContainer()

    def total() -> int:
        return 100 * len(container.loaded)

    cache, _ = _make(
        tmp_path,
        FakeStore(["a", "b"]),
        container=container,
        budgets=Budgets(1, None, None, 1 << 20),
        memory_probe=total,
    )
    await _use(cache, "a")
    await cache.settle()
    assert cache.entries()[0].memory_bytes == 100
    container.unload_gate.clear()
    await _use(cache, "b")
    container.unload_gate.set()
    await cache.settle()
    b = next(e for e in cache.entries() if e.target_model == "b")
    assert b.memory_bytes != 0 or b.memory_measured is False
    assert b.memory_measured is False, "a delta over an overlapping unload is not trusted"


# ----- fidelity: bounded parallel downloads and loads; changed artifacts ------------------


async def test_parallel_loads_are_bounded_and_the_queue_is_visible(tmp_path: Path) -> None:
    metrics = Metrics()
    cache, container = _make(
        tmp_path, FakeStore(["a", "b", "c"]), max_parallel_loads=1, metrics=metrics
    )
    container.gate.clear()
    requests = [asyncio.create_task(_use(cache, t)) for t in ("a", "b", "c")]
    await _until(lambda: read_samples(metrics.render().decode())["mme_model_loads_waiting"] == 2)
    assert len(container.loads) == 1, "one load at a time"
    container.gate.set()
    await asyncio.gather(*requests)
    assert sorted(container.loads) == ["a", "b", "c"]


async def test_parallel_downloads_are_bounded(tmp_path: Path) -> None:
    store = FakeStore(["a", "b"])
    store.gate.clear()
    metrics = Metrics()
    cache, _ = _make(tmp_path, store, max_parallel_downloads=1, metrics=metrics)
    requests = [asyncio.create_task(_use(cache, t)) for t in ("a", "b")]
    waiting = "mme_model_downloads_waiting"
    await _until(lambda: read_samples(metrics.render().decode())[waiting] == 1)
    assert len(store.reads) == 1
    store.gate.set()
    await asyncio.gather(*requests)
    assert sorted(store.reads) == ["a", "b"]


async def test_a_changed_artifact_is_flagged_and_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    cache, _ = _make(tmp_path, FakeStore(["a"]), metrics=metrics)
    await _use(cache, "a")
    assert cache.entries()[0].etag == "etag-a"
    cache.note_stored_etags({"a": "etag-a"})
    assert cache.entries()[0].artifact_changed is False
    cache.note_stored_etags({"a": "etag-a2"})
    cache.note_stored_etags({"a": "etag-a2"})
    assert cache.entries()[0].artifact_changed is True
    samples = read_samples(metrics.render().decode())
    assert samples["mme_model_artifact_changes_total"] == 1
