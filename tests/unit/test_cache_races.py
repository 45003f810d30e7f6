"""The cache races a review found, one test each (issue numbering): every transition is one
step of the state machine, so none of these interleavings can break a budget or a model."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mme_local.artifacts.rules import ENTRY_BYTES
from mme_local.cache.entry import ModelState
from mme_local.cache.manager import ModelCache
from mme_local.cache.policy import Budgets
from mme_local.metrics import Metrics
from mme_local.runtime.errors import LoadRejected
from tests.unit.test_cache import FakeContainer, FakeStore

ONE_MODEL = 100 + len("backend: 'python'") + 4 * ENTRY_BYTES
"""Extracted bytes of the fake archive (data plus a block per entry)."""


def _cache(
    tmp_path: Path,
    store: FakeStore,
    container: FakeContainer,
    budgets: Budgets,
    **options: Any,
) -> ModelCache:
    return ModelCache(
        store=store,  # type: ignore[arg-type]
        client=container,  # type: ignore[arg-type]
        model_url=str,
        cache_dir=tmp_path,
        budgets=budgets,
        metrics=Metrics(),
        memory_probe=options.pop("memory_probe", lambda: 0),
        **options,
    )


async def _use(cache: ModelCache, target: str) -> bool:
    async with cache.acquire(target) as lease:
        return lease.cache_hit


def _folders_match_states(cache: ModelCache) -> None:
    """Every model the cache counts on disk has its folder, and the bytes add up."""
    for entry in cache.entries():
        on_disk = entry.state in (ModelState.ON_DISK, ModelState.LOADED, ModelState.LOADING)
        if on_disk:
            assert (cache.cache_dir / entry.name).is_dir(), f"{entry.target_model}: no folder"
            assert entry.disk_bytes > 0
    assert cache.disk_bytes() == sum(e.disk_bytes for e in cache.entries())


@pytest.fixture
def slow_deletes(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Deleting a model folder waits for the returned event (set it to let them go)."""
    release = threading.Event()
    real = shutil.rmtree

    def gated(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name.startswith(".trash-"):
            release.wait(10)
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", gated)
    yield release
    release.set()


async def test_1_a_model_requested_while_deleted_for_disk_room_is_never_left_without_files(
    tmp_path: Path, slow_deletes: threading.Event
) -> None:
    store, container = FakeStore(["a", "b", "c"]), FakeContainer()
    cache = _cache(tmp_path, store, container, Budgets(1, None, 2 * ONE_MODEL + 10, 1 << 20))
    for target in ("a", "b"):
        await _use(cache, target)  # a on disk, b loaded
    container.gate.clear()
    cold = asyncio.create_task(_use(cache, "c"))  # needs a's disk room
    await asyncio.sleep(0.2)
    again = asyncio.create_task(_use(cache, "a"))  # asks for a while it is being deleted
    await asyncio.sleep(0.2)
    slow_deletes.set()
    container.gate.set()
    await asyncio.wait_for(asyncio.gather(cold, again), 10)
    await cache.settle()
    _folders_match_states(cache)
    for target in ("a", "b", "c", "a"):  # and every model stays usable afterwards
        await asyncio.wait_for(_use(cache, target), 10)
    await cache.settle()
    _folders_match_states(cache)
    await cache.close()


async def test_2_parallel_downloads_never_overshoot_the_disk_budget_and_wait_for_room(
    tmp_path: Path,
) -> None:
    store, container = FakeStore(["a", "b", "c"]), FakeContainer()
    budget = 2 * ONE_MODEL + ONE_MODEL // 2
    cache = _cache(tmp_path, store, container, Budgets(None, None, budget, ONE_MODEL + 100))
    peak = 0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, cache.disk_bytes())

    container_load = container.load

    async def load(model_name: str, url: str, target_model: str) -> None:
        watch()
        await container_load(model_name, url, target_model)
        watch()

    container.load = load  # type: ignore[method-assign]
    # All three answer (c waits for room, which a and b free once idle): no DiskFull.
    results = await asyncio.wait_for(asyncio.gather(*(_use(cache, t) for t in ("a", "b", "c"))), 10)
    assert results == [False, False, False]
    await cache.settle()
    assert peak <= budget and cache.disk_bytes() <= budget
    _folders_match_states(cache)
    await cache.close()


async def test_3_concurrent_reloads_respect_max_loaded_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, container = FakeStore(["a", "b", "c"]), FakeContainer()
    cache = _cache(tmp_path, store, container, Budgets(1, 1 << 40, None, 1 << 20))
    for target in ("a", "b", "c"):
        await _use(cache, target)  # c loaded; a and b on disk
    await cache.settle()
    await asyncio.wait_for(asyncio.gather(_use(cache, "a"), _use(cache, "b")), 10)
    await cache.settle()
    # Both were in use at once, so the second load went over the limit, said so, and the
    # limit holds again as soon as either is idle.
    assert len(container.loaded) == 1
    assert "loads over max loaded models (1)" in caplog.text
    await cache.close()


async def test_4_a_slow_measurement_after_a_load_is_not_a_load_timeout(tmp_path: Path) -> None:
    store, container = FakeStore(["a"]), FakeContainer()

    def slow_probe() -> int:
        time.sleep(0.6)  # longer than the load timeout below
        return 0

    cache = _cache(
        tmp_path,
        store,
        container,
        Budgets(None, 1 << 40, None, 1 << 20),
        memory_probe=slow_probe,
        load_timeout_s=0.4,
    )
    assert await asyncio.wait_for(_use(cache, "a"), 10) is False
    await cache.settle()
    assert container.unloads == [] and container.loaded == {"a"}
    assert await _use(cache, "a") is True
    await cache.close()


class SlowLoads(FakeContainer):
    def __init__(self, load_s: float) -> None:
        super().__init__()
        self.load_s = load_s

    async def load(self, model_name: str, url: str, target_model: str) -> None:
        await asyncio.sleep(self.load_s)
        await super().load(model_name, url, target_model)


async def test_5_the_load_timeout_does_not_count_time_queued_for_a_load_slot(
    tmp_path: Path,
) -> None:
    store, container = FakeStore(["a", "b", "c"]), SlowLoads(0.5)
    cache = _cache(
        tmp_path,
        store,
        container,
        Budgets(None, None, None, 1 << 20),
        max_parallel_loads=1,
        load_timeout_s=0.9,  # each load takes 0.5 s; the third waits 1 s for its slot
    )
    results = await asyncio.wait_for(asyncio.gather(*(_use(cache, t) for t in ("a", "b", "c"))), 10)
    assert results == [False, False, False]
    assert container.unloads == []
    await cache.close()


async def test_6_with_the_cache_disabled_a_failed_load_leaves_nothing_on_disk(
    tmp_path: Path,
) -> None:
    store, container = FakeStore(["a"]), FakeContainer()
    cache = _cache(
        tmp_path, store, container, Budgets(None, None, None, 1 << 20), cache_enabled=False
    )
    container.fail_next.append(LoadRejected("bad model"))
    with pytest.raises(LoadRejected):
        await _use(cache, "a")
    await cache.settle()
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    assert all(e.state is ModelState.REMOTE for e in cache.entries())
    await cache.close()


async def test_7_a_model_on_disk_loads_while_every_download_is_busy(tmp_path: Path) -> None:
    targets = ["a"] + [f"cold{i}" for i in range(12)]
    store, container = FakeStore(targets), FakeContainer()
    cache = _cache(tmp_path, store, container, Budgets(1, 1 << 40, None, 1 << 20))
    await _use(cache, "a")
    await _use(cache, "cold0")  # a is now on disk, not loaded
    store.gate.clear()  # every download blocks inside its extraction thread
    downloads = [asyncio.create_task(_use(cache, t)) for t in targets[2:]]
    await asyncio.sleep(0.3)
    # Loading a needs memory probes, which must not queue behind the extractions.
    assert await asyncio.wait_for(_use(cache, "a"), 5) is False
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(*downloads, return_exceptions=True), 20)
    await cache.close()


async def test_9_the_server_s_own_memory_counts_from_the_first_load(tmp_path: Path) -> None:
    """Loads overlapping from the start (never a quiet moment to measure the server alone)
    must still be held to the memory budget: the server's own memory is measured before any
    load, not only at the first quiet load (after which every idle model went at once)."""
    targets = [f"m{i}" for i in range(8)]
    store, container = FakeStore(targets), FakeContainer()
    base, each = 1000, 100
    unloads_at_each_load: list[int] = []
    container_load = container.load

    async def load(model_name: str, url: str, target_model: str) -> None:
        unloads_at_each_load.append(len(container.unloads))
        await asyncio.sleep(0.05)
        await container_load(model_name, url, target_model)

    container.load = load  # type: ignore[method-assign]
    cache = _cache(
        tmp_path,
        store,
        container,
        Budgets(None, base + 2 * each + each // 2, None, 1 << 20),
        memory_probe=lambda: base + each * len(container.loaded),
        model_memory_probe=lambda name: each,
        max_parallel_loads=2,
    )
    await cache.measure_base()
    await asyncio.wait_for(asyncio.gather(*(_use(cache, t) for t in targets)), 10)
    await cache.settle()
    # Two models fit: idle ones make room while the later loads still run.
    assert unloads_at_each_load[-1] > 0, unloads_at_each_load
    assert len(container.loaded) <= 2
    await cache.close()


async def test_a_download_is_timed_from_when_the_machine_issued_it(tmp_path: Path) -> None:
    """The replay starts a download when the machine issues it; the recorded time must too.

    Two downloads that end a fraction of a millisecond apart otherwise end in one order live and
    in the other in the replay (the download task starts a loop turn or more after the issue).
    """
    store, container = FakeStore(["a"]), FakeContainer()
    cache = _cache(tmp_path, store, container, Budgets(None, None, None, 1 << 20))
    taken: list[float | None] = []

    async def use() -> None:
        async with cache.acquire("a") as lease:
            taken.append(lease.download_s)

    user = asyncio.create_task(use())
    await asyncio.sleep(0)  # the request is made and the download issued, not yet started
    time.sleep(0.3)  # the loop is busy before the download's task first runs
    await asyncio.wait_for(user, 10)
    assert taken[0] is not None and taken[0] >= 0.3
    await cache.close()


class SlowStat(FakeStore):
    def stat(self, target_model: str) -> tuple[int, str | None]:
        time.sleep(0.3)
        return super().stat(target_model)


async def test_a_recorded_download_counts_the_size_lookup_before_it(tmp_path: Path) -> None:
    """With a disk budget the cache asks S3 for the size first; the replay, which may have no
    disk budget, downloads at once: the recorded download must cover both."""
    store, container = SlowStat(["a"]), FakeContainer()
    cache = _cache(tmp_path, store, container, Budgets(None, None, 1 << 40, 1 << 20))
    async with cache.acquire("a") as lease:
        assert lease.download_s is not None and lease.download_s >= 0.3
    await cache.close()


async def test_a_load_is_timed_from_when_it_could_first_run_to_its_end(tmp_path: Path) -> None:
    """The replay starts a load when the machine issues it, or, with loads taking turns, when
    the call before it ends; the recorded time must start there too. The memory reading taken
    before a quiet load is part of it; the turn spent waiting behind another load is not."""

    def slow_probe() -> int:
        time.sleep(0.3)
        return 0

    store, container = FakeStore(["a"]), SlowLoads(0.2)
    cache = _cache(
        tmp_path,
        store,
        container,
        Budgets(None, None, None, 1 << 20),
        memory_probe=slow_probe,
        serial_model_control=True,
    )
    async with cache.acquire("a") as lease:
        assert lease.load_s is not None and lease.load_s >= 0.5  # the reading, then the load
    await cache.close()


async def test_a_load_behind_another_in_the_lane_is_timed_from_that_one_s_end(
    tmp_path: Path,
) -> None:
    store, container = FakeStore(["a", "b"]), SlowLoads(0.3)
    cache = _cache(
        tmp_path,
        store,
        container,
        Budgets(None, None, None, 1 << 20),
        serial_model_control=True,
    )

    async def load_s(target: str) -> float | None:
        async with cache.acquire(target) as lease:
            return lease.load_s

    first, second = await asyncio.wait_for(asyncio.gather(load_s("a"), load_s("b")), 10)
    assert first is not None and second is not None
    assert 0.3 <= first < 0.5 and 0.3 <= second < 0.5
    await cache.close()
