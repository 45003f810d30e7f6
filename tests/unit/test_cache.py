"""The model cache alone, with a fake store and a fake container."""

from __future__ import annotations

import asyncio
import errno
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from mme_local.artifacts.rules import ENTRY_BYTES
from mme_local.cache.entry import ModelState
from mme_local.cache.manager import ModelCache, ModelNotReady
from mme_local.cache.policy import Budgets
from mme_local.metrics import Metrics
from mme_local.runtime.errors import InsufficientMemory, LoadRejected
from mme_local.store.source import Fetched, ObjectMissing
from tests.support import tar_gz_bytes

ARCHIVE = tar_gz_bytes({"m/config.pbtxt": b"backend: 'python'", "m/1/model.py": b"x" * 100})


class FakeStore:
    def __init__(self, targets: list[str]) -> None:
        self.targets = set(targets)
        self.reads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def stat(self, target_model: str) -> tuple[int, str | None]:
        if target_model not in self.targets:
            raise ObjectMissing("bucket", target_model)
        return len(ARCHIVE), f"etag-{target_model}"

    def read_with(self, target_model: str, consume: Callable[[IO[bytes]], int]) -> Fetched:
        self.reads.append(target_model)
        self.gate.wait(10)
        if target_model not in self.targets:
            raise ObjectMissing("bucket", target_model)
        return Fetched(consume(io.BytesIO(ARCHIVE)), f"etag-{target_model}")


class FakeContainer:
    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.unload_gate = asyncio.Event()
        self.unload_gate.set()
        self.fail_next: list[Exception] = []

    async def load(self, model_name: str, url: str, target_model: str) -> None:
        self.loads.append(target_model)
        await self.gate.wait()
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.loaded.add(target_model)

    async def unload(self, model_name: str, target_model: str) -> None:
        self.unloads.append(target_model)
        await self.unload_gate.wait()
        self.loaded.discard(target_model)


def _cache(
    tmp_path: Path,
    targets: list[str],
    max_loaded: int | None = None,
    disk: int | None = None,
    ready_timeout_s: float = 30.0,
    cache_enabled: bool = True,
) -> tuple[ModelCache, FakeStore, FakeContainer]:
    store, container = FakeStore(targets), FakeContainer()
    cache = ModelCache(
        store=store,  # type: ignore[arg-type]
        client=container,  # type: ignore[arg-type]
        model_url=str,
        cache_dir=tmp_path,
        budgets=Budgets(max_loaded, None, disk, 1 << 20),
        metrics=Metrics(),
        memory_probe=lambda: 0,
        ready_timeout_s=ready_timeout_s,
        cache_enabled=cache_enabled,
    )
    return cache, store, container


async def _use(cache: ModelCache, target: str) -> bool:
    async with cache.acquire(target) as lease:
        return lease.cache_hit


async def test_concurrent_first_requests_share_one_download_and_load(tmp_path: Path) -> None:
    cache, store, container = _cache(tmp_path, ["a"])
    container.gate.clear()
    waiters = [asyncio.create_task(_use(cache, "a")) for _ in range(10)]
    await asyncio.sleep(0.2)
    container.gate.set()
    hits = await asyncio.gather(*waiters)
    assert hits == [False] * 10
    assert store.reads == ["a"]
    assert container.loads == ["a"]
    assert await _use(cache, "a") is True


async def test_least_recently_used_is_evicted(tmp_path: Path) -> None:
    cache, store, container = _cache(tmp_path, ["a", "b", "c"], max_loaded=2)
    for target in ("a", "b", "a", "c"):
        await _use(cache, target)
    assert container.unloads == ["b"]
    assert container.loaded == {"a", "c"}
    await _use(cache, "b")
    assert store.reads == ["a", "b", "c"], "b came back from disk, not from S3"
    assert [e.target_model for e in cache.evictions] == ["b", "a"]
    assert cache.evictions[0].reason == "max loaded models (2)"


async def test_a_pinned_model_is_never_unloaded(tmp_path: Path) -> None:
    cache, _, container = _cache(tmp_path, ["a", "b", "c"], max_loaded=1)
    async with cache.acquire("a"):
        await _use(cache, "b")  # no room, and a is in use: b loads over budget
        assert container.loaded == {"a", "b"}
        # b went over the budget: it makes way as soon as it is idle, and so does c.
        await _use(cache, "c")
        await cache.settle()
        assert container.unloads == ["b", "c"]
        assert container.loaded == {"a"}
    await _use(cache, "b")
    assert container.unloads == ["b", "c", "a"]


async def test_a_failed_load_reaches_every_waiter_and_is_retried_later(tmp_path: Path) -> None:
    cache, store, container = _cache(tmp_path, ["a"])
    container.fail_next = [LoadRejected("bad config", 400)]
    container.gate.clear()
    waiters = [asyncio.create_task(_use(cache, "a")) for _ in range(3)]
    await asyncio.sleep(0.1)
    container.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, LoadRejected) for r in results)
    assert cache.entries()[0].state is ModelState.ON_DISK
    assert await _use(cache, "a") is False
    assert store.reads == ["a"] and container.loads == ["a", "a"]


async def test_507_on_load_evicts_one_and_retries(tmp_path: Path) -> None:
    cache, _, container = _cache(tmp_path, ["a", "b"])
    await _use(cache, "a")
    container.fail_next = [InsufficientMemory("CUDA out of memory", 507)]
    await _use(cache, "b")
    assert container.unloads == ["a"]
    assert container.loaded == {"b"}
    assert cache.evictions[0].reason == "container answered 507 on load"


async def test_missing_object_leaves_nothing_on_disk(tmp_path: Path) -> None:
    cache, _, _ = _cache(tmp_path, [])
    with pytest.raises(ObjectMissing):
        await _use(cache, "ghost")
    assert list(tmp_path.iterdir()) == []
    assert cache.entries() == [], "a name with no object leaves a count, not a model"
    assert cache.machine.forgotten == 1


async def test_slow_cold_start_answers_not_ready_and_carries_on(tmp_path: Path) -> None:
    cache, _, container = _cache(tmp_path, ["a"], ready_timeout_s=0.1)
    container.gate.clear()
    with pytest.raises(ModelNotReady):
        await _use(cache, "a")
    container.gate.set()
    await asyncio.sleep(0.1)
    assert cache.entries()[0].state is ModelState.LOADED
    assert await _use(cache, "a") is True
    assert container.loads == ["a"]


async def test_disabled_model_cache_unloads_and_deletes_after_each_call(tmp_path: Path) -> None:
    cache, store, container = _cache(tmp_path, ["a"], cache_enabled=False)
    await _use(cache, "a")
    await asyncio.sleep(0.05)
    assert container.unloads == ["a"]
    assert cache.entries()[0].state is ModelState.REMOTE
    assert list(tmp_path.iterdir()) == []
    await _use(cache, "a")
    assert store.reads == ["a", "a"]


async def test_disk_budget_deletes_idle_artifacts(tmp_path: Path) -> None:
    # Data plus one file-system block for each of m/, m/config.pbtxt, m/1/ and m/1/model.py.
    one_model = 100 + len("backend: 'python'") + 4 * ENTRY_BYTES
    cache, store, _ = _cache(tmp_path, ["a", "b", "c"], max_loaded=1, disk=2 * one_model)
    for target in ("a", "b", "c"):
        await _use(cache, target)
    # a was unloaded for b, then deleted from disk to make room for c's files.
    assert cache.entries()[0].target_model == "a"
    assert cache.entries()[0].state is ModelState.REMOTE
    assert cache.disk_bytes() <= 2 * one_model
    assert "disk budget" in [e.reason for e in cache.evictions]
    await _use(cache, "a")
    assert store.reads == ["a", "b", "c", "a"]


@pytest.mark.parametrize("which", ["host", "gpu"])
async def test_measured_memory_over_budget_evicts_least_recently_used(
    tmp_path: Path, which: str
) -> None:
    store, container = FakeStore(["a", "b", "c"]), FakeContainer()

    def probe() -> int:
        return 100 * len(container.loaded)

    cache = ModelCache(
        store=store,  # type: ignore[arg-type]
        client=container,  # type: ignore[arg-type]
        model_url=str,
        cache_dir=tmp_path,
        budgets=Budgets(
            None,
            250 if which == "host" else None,
            None,
            1 << 20,
            gpu_memory_bytes=250 if which == "gpu" else None,
        ),
        metrics=Metrics(),
        memory_probe=probe if which == "host" else lambda: 0,
        gpu_memory_probe=probe if which == "gpu" else None,
    )
    for target in ("a", "b", "c"):
        await _use(cache, target)
    # c is served as soon as it is loaded; the unload its measurement calls for follows.
    await cache.settle()
    assert container.loaded == {"b", "c"}
    assert cache.evictions[0].target_model == "a"
    assert cache.evictions[0].reason == f"{'host' if which == 'host' else 'GPU'} memory budget"


async def test_a_load_does_not_wait_for_the_unload_that_makes_room(tmp_path: Path) -> None:
    cache, _, container = _cache(tmp_path, ["a", "b"], max_loaded=1)
    await _use(cache, "a")
    container.unload_gate.clear()  # a's unload hangs
    assert await asyncio.wait_for(_use(cache, "b"), 5) is False
    assert container.unloads == ["a"] and "a" in container.loaded
    assert cache.entries()[0].state is ModelState.UNLOADING
    container.unload_gate.set()
    await cache.settle()
    assert container.loaded == {"b"}
    assert cache.entries()[0].state is ModelState.ON_DISK


async def test_a_full_disk_leaves_the_cache_consistent(tmp_path: Path) -> None:
    cache, store, _ = _cache(tmp_path, ["a"])

    def no_space(target_model: str, consume: Callable[[IO[bytes]], int]) -> Fetched:
        raise OSError(errno.ENOSPC, "No space left on device")

    store.read_with = no_space  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space left"):
        await _use(cache, "a")
    assert cache.entries() == []
    assert list(tmp_path.iterdir()) == []
