"""The simulator against the cache's rules, one rule per test, on hand-made workloads."""

from __future__ import annotations

import pytest

from mme_local.artifacts.rules import MAX_ARCHIVE_BYTES
from mme_local.cache.policy import Budgets, EvictionPolicy
from mme_local.capacity.simulator import SimConfig, SimResult, model_costs, simulate
from mme_local.capacity.workload import Workload, zipf_sequence
from mme_local.demo.oracle import simulate_lru
from tests.unit.capacity_support import MiB, footprint, profile, sequential


def _budgets(count: int | None = None, host: int | None = None, disk: int | None = None) -> Budgets:
    return Budgets(count, host, disk, MAX_ARCHIVE_BYTES)


def _run(workload: Workload, config: SimConfig, cloud: bool = False) -> SimResult:
    return simulate(
        workload, model_costs(workload, profile(*workload.footprints[:1]), cloud), config
    )


def test_sequential_count_budget_matches_a_plain_lru() -> None:
    models = zipf_sequence(40, 500, 1.1, seed=3).tolist()
    expected = simulate_lru(models, capacity=5)
    result = _run(sequential(models), SimConfig(_budgets(count=5)))
    assert (result.hits, result.loads, result.unloads) == (
        expected.hits,
        expected.loads,
        expected.unloads,
    )
    assert result.downloads == len(set(models))


def test_the_policy_is_the_live_caches_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EvictionPolicy, "victim", lambda self, models, keep=None: None)
    result = _run(sequential([0, 1, 2]), SimConfig(_budgets(count=1)))
    assert result.unloads == 0
    assert result.over_budget_loads == 2


def test_requests_during_a_load_share_it_and_miss() -> None:
    workload = Workload([0.0, 0.2, 0.4], [0, 0, 0], ["m"], [footprint(load_s=1.0)])
    result = _run(workload, SimConfig(_budgets()))
    assert (result.loads, result.downloads, result.hits) == (1, 1, 0)
    # 0.5 s download + 1 s load, waited for from 0, 0.2 and 0.4 s
    assert result.wait_p99_s == pytest.approx(1.5, abs=0.01)


def test_a_pinned_model_is_not_evicted() -> None:
    # model 0's request is still being answered (10 s) when model 1 needs room
    workload = Workload([0.0, 2.0], [0, 1], ["a", "b"], [footprint()] * 2, service_s=[10.0, 0.0])
    result = _run(workload, SimConfig(_budgets(count=1)))
    # b loads over the budget beside it; a makes way only once its request has ended
    assert (result.loads, result.unloads, result.over_budget_loads) == (2, 1, 1)


def test_count_budget_unload_runs_beside_the_next_load() -> None:
    fp = footprint(load_s=1.0, download_s=0.0, unload_s=5.0)
    result = _run(sequential([0, 1], gap_s=3.0, fp=fp), SimConfig(_budgets(count=1)))
    # the second request waits only for its own load, not for the 5 s unload
    assert result.wait_p99_s == pytest.approx(1.0, abs=0.01)


def test_a_slow_load_answers_429_and_carries_on() -> None:
    fp = footprint(load_s=5.0, download_s=0.0)
    workload = Workload([0.0, 10.0], [0, 0], ["a"], [fp])
    result = _run(workload, SimConfig(_budgets(), ready_timeout_s=2.0))
    assert (result.not_ready, result.loads, result.hits) == (1, 1, 1)


def test_memory_budget_evicts_after_the_first_load_and_before_later_ones() -> None:
    # base 200 MiB + 100 MiB per model; room for two models in 450 MiB
    config = SimConfig(_budgets(host=450 * MiB), base_host_bytes=200 * MiB)
    result = _run(sequential([0, 1, 2, 0, 1, 2]), config)
    # the third load learns its size and evicts after; later loads evict before
    assert result.loads == 6
    assert result.unloads == 4
    assert result.peak_host_bytes <= 500 * MiB


def test_disk_budget_deletes_idle_models_and_they_download_again() -> None:
    # 20 MiB extracted each, 50 MiB of disk: two fit
    result = _run(sequential([0, 1, 2, 0]), SimConfig(_budgets(count=1, disk=50 * MiB)))
    assert result.deletions >= 1
    assert result.downloads == 4


def test_disabled_model_cache_loads_and_deletes_every_time() -> None:
    result = _run(sequential([0, 0, 0]), SimConfig(_budgets(), cache_enabled=False))
    assert (result.hits, result.loads, result.unloads, result.downloads) == (0, 3, 3, 3)


def test_several_instances_route_to_the_one_that_has_the_model() -> None:
    result = _run(sequential([0, 1, 0, 1, 0, 1]), SimConfig(_budgets(count=1), count=2))
    assert (result.loads, result.hits, result.unloads) == (2, 4, 0)


def test_bounded_loads_queue() -> None:
    fp = footprint(load_s=1.0, download_s=0.0)
    workload = Workload([0.0, 0.0], [0, 1], ["a", "b"], [fp, fp])
    result = _run(workload, SimConfig(_budgets(), parallel_loads=1))
    assert result.wait_p99_s == pytest.approx(2.0, abs=0.02)


def test_bounded_downloads_queue_apart_from_loads() -> None:
    # one download slot: b's download starts when a's ends (0.5 s), a's load runs beside it
    fp = footprint(load_s=1.0, download_s=0.5)
    workload = Workload([0.0, 0.0], [0, 1], ["a", "b"], [fp, fp])
    result = _run(workload, SimConfig(_budgets(), parallel_downloads=1, parallel_loads=2))
    assert sorted([result.wait_p50_s, result.wait_p99_s])[1] == pytest.approx(2.0, abs=0.02)


def test_cloud_footprints_remove_the_stub_cost_from_torchscript_only() -> None:
    torchscript = footprint(["t.tar.gz"], host_mib=500, platform="pytorch_libtorch")
    python = footprint(["p.tar.gz"], host_mib=500, platform="python")
    prof = profile(torchscript, python, stub_mib=400)
    assert prof.cloud_host_bytes(torchscript) == 100 * MiB
    assert prof.cloud_host_bytes(python) == 500 * MiB
    assert prof.cloud_gpu_bytes(torchscript) == torchscript.extracted_bytes


def test_the_after_load_memory_check_unloads_beside_the_served_requests() -> None:
    # b's load ends at 11.5 s and b is served then; a's 5 s unload for memory goes on beside
    fp = footprint(load_s=1.0, download_s=0.5, unload_s=5.0)
    workload = Workload([0.0, 10.0, 12.0], [0, 1, 1], ["a", "b"], [fp, fp])
    config = SimConfig(_budgets(host=350 * MiB), base_host_bytes=200 * MiB)
    result = _run(workload, config)
    assert (result.hits, result.loads, result.unloads) == (1, 2, 1)
    assert result.wait_p50_s == pytest.approx(1.5)


def test_a_busy_model_spreads_to_another_instance() -> None:
    # the second request arrives while the first is still being answered on instance one
    workload = Workload([0.0, 5.0, 5.5], [0, 0, 0], ["a"], [footprint()], service_s=[10.0, 1, 1])
    result = _run(workload, SimConfig(_budgets(), count=2))
    assert (result.loads, result.hits) == (2, 0)
    workload = Workload([0.0, 5.0], [0, 0], ["a"], [footprint()], service_s=[1.0, 1.0])
    assert _run(workload, SimConfig(_budgets(), count=2)).loads == 1
