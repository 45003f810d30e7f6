"""The routing rule shared by the live gateway and the simulator, and the facts each feeds it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.config_file import SettingsError, load_settings
from mme_local.gateway.fleet import Fleet, Member
from mme_local.metrics import Metrics
from mme_local.metrics_reader import read_samples
from mme_local.routing import MEMORY_TIE, route
from mme_local.settings import EmulatorSettings


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[int], list[tuple[bool, bool, int, float]]]:
    """Instances as (holds, busy, memory held, free order), and a non-empty candidate list."""
    count = draw(st.integers(1, 6))
    facts = [
        (
            draw(st.booleans()),
            draw(st.booleans()),
            draw(st.sampled_from([0, 100, 103, 104, 106, 200])),
            draw(st.floats(0, 10, allow_nan=False)),
        )
        for _ in range(count)
    ]
    candidates = sorted(draw(st.sets(st.integers(0, count - 1), min_size=1)))
    return candidates, facts


def _route(candidates: list[int], facts: list[tuple[bool, bool, int, float]]) -> int:
    return route(
        candidates,
        holds=lambda i: facts[i][0],
        busy=lambda i: facts[i][1],
        memory_held=lambda i: facts[i][2],
        free_order=lambda i: facts[i][3],
    )


@given(fleets())
def test_a_request_goes_where_the_rule_says(
    fleet: tuple[list[int], list[tuple[bool, bool, int, float]]],
) -> None:
    candidates, facts = fleet
    chosen = _route(candidates, facts)
    assert chosen in candidates
    free_holders = [i for i in candidates if facts[i][0] and not facts[i][1]]
    others = [i for i in candidates if not facts[i][0]]
    if free_holders:
        # Sticky: a holder that is not busy always wins, the lowest index first.
        assert chosen == free_holders[0]
    elif others:
        # Spread: the instance with the least memory held loads it; within MEMORY_TIE of the
        # least is a tie, won by the lowest index.
        least = min(facts[i][2] for i in others)
        assert chosen == min(i for i in others if facts[i][2] <= least * (1 + MEMORY_TIE))
    else:
        assert facts[chosen][3] == min(facts[i][3] for i in candidates)


def test_no_instance_is_an_error() -> None:
    with pytest.raises(ValueError):
        _route([], [])


def _cache(held: int, **models: tuple[int, ...] | tuple[ModelState, int]) -> Any:
    """A cache whose machine holds `models`: name -> (state, requests in flight[, memory])."""
    entries = {
        name: ModelEntry(
            name,
            name,
            state=ModelState(spec[0]),
            pins=int(spec[1]),
            memory_bytes=int(spec[2]) if len(spec) > 2 else 100,
        )
        for name, spec in models.items()
    }
    machine = SimpleNamespace(models=entries, memory_staying=held)
    return SimpleNamespace(machine=machine)


def _fleet(*caches: Any, down: frozenset[int] = frozenset()) -> Fleet:
    return Fleet(
        [
            Member(i, cache, client=None, running=lambda i=i: i not in down)  # type: ignore[arg-type]
            for i, cache in enumerate(caches)
        ]
    )


LOADED, LOADING = ModelState.LOADED, ModelState.LOADING


def test_the_gateway_reads_holds_busy_and_memory_from_each_cache_machine() -> None:
    idle = _cache(100, a=(LOADED, 0))
    serving = _cache(300, b=(LOADED, 1))
    empty = _cache(200)
    fleet = _fleet(idle, serving, empty)
    assert fleet.pick("a").index == 0, "loaded and idle: it stays"
    # b is answering a request on 1: busy, so another instance loads it, the one holding
    # the least memory (0, with 100 bytes)
    assert fleet.pick("b").index == 0
    assert fleet.pick("c").index == 0
    idle.machine.memory_staying = 500
    assert fleet.pick("c").index == 2
    # a model being loaded is not busy: wait on that load rather than load it twice
    assert _fleet(_cache(0), _cache(900, d=(LOADING, 3))).pick("d").index == 1


def test_every_instance_busy_picks_the_fewest_in_flight() -> None:
    fleet = _fleet(_cache(0, a=(LOADED, 3)), _cache(0, a=(LOADED, 1)))
    assert fleet.pick("a").index == 1


def test_memory_that_differs_by_noise_is_a_tie_won_by_the_lowest_index() -> None:
    assert _fleet(_cache(1030), _cache(1000)).pick("a").index == 0
    assert _fleet(_cache(1100), _cache(1000)).pick("a").index == 1


def test_a_loaded_model_not_measured_yet_counts_as_it_measures_elsewhere() -> None:
    # Instance 1's `a` is loaded but unmeasured (0): it counts as the 300 it measures on 0,
    # so instance 1 holds 300 + 100 and instance 2 (350) is the emptier one.
    measured = _cache(500, a=(LOADED, 0, 300), x=(LOADED, 0, 200))
    unmeasured = _cache(100, a=(LOADED, 0, 0), b=(LOADED, 0, 100))
    assert _fleet(measured, unmeasured, _cache(350)).pick("c").index == 2
    # A model measured nowhere counts as the mean measured model (200 here).
    sizes = _cache(400, b=(LOADED, 0, 100), c=(LOADED, 0, 300))
    lone = _cache(0, d=(LOADED, 0, 0))
    assert _fleet(sizes, lone, _cache(150)).pick("e").index == 2


def test_the_memory_compared_leaves_out_models_being_unloaded() -> None:
    from mme_local.cache.machine import CacheMachine
    from mme_local.cache.policy import Budgets

    machine = CacheMachine(Budgets(1, None, None, 2**30), clock=lambda: 0.0)
    machine.host_held, machine.host_leaving = 500, 200
    assert machine.memory_staying == 300


def test_a_restarting_instance_gets_no_new_requests() -> None:
    fleet = _fleet(_cache(0, a=(LOADED, 0)), _cache(900), down=frozenset({0}))
    assert fleet.pick("a").index == 1
    everything_down = _fleet(_cache(0, a=(LOADED, 0)), _cache(0), down=frozenset({0, 1}))
    assert everything_down.pick("a").index == 0, "then the usual error comes from the cache"


def test_cache_gauges_are_per_instance_and_summed_for_cloudwatch_names() -> None:
    metrics = Metrics()
    metrics.set_cache_gauges(0, 2, 10, 0, 1, 1000, None)
    metrics.set_cache_gauges(1, 1, 5, 1, 0, 700, 300)
    metrics.set_cache_gauges(0, 3, 10, 0, 0, 1200, None)
    metrics.count_cache_lookup(True, 1)
    metrics.count_cache_lookup(False, 0)
    metrics.count_load(0)
    metrics.count_unload(1)
    metrics.set_host_memory(0, 40)
    metrics.set_host_memory(1, 2)
    read = read_samples(metrics.render().decode())
    assert read["mme_loaded_model_count"] == 4
    assert read["mme_disk_bytes"] == 15
    assert read["mme_model_loads_waiting"] == 0
    assert read["mme_host_memory_bytes"] == 42
    assert read['mme_instance_loaded_model_count{instance="0"}'] == 3
    assert read['mme_instance_memory_bytes{instance="0",memory="host"}'] == 1200
    assert read['mme_instance_memory_bytes{instance="1",memory="gpu"}'] == 300
    assert read['mme_instance_model_cache_hit_total{instance="1"}'] == 1
    assert read['mme_instance_model_cache_lookups_total{instance="0"}'] == 1
    assert read["mme_model_cache_hit_total"] == 1
    assert read['mme_instance_model_loads_total{instance="0"}'] == 1
    assert read['mme_instance_model_unloads_total{instance="1"}'] == 1


def _settings(flags: dict[str, Any], env: dict[str, str] | None = None) -> EmulatorSettings:
    return load_settings(EmulatorSettings, flags, None, env or {})


def test_instance_count_is_a_setting_like_the_others(tmp_path: Any) -> None:
    assert _settings({}).instance_count == 1
    assert _settings({}, {"MME_LOCAL_INSTANCE_COUNT": "3"}).instance_count == 3
    path = tmp_path / "mme.toml"
    path.write_text("[local]\ninstance_count = 2\n")
    assert load_settings(EmulatorSettings, {}, path, {}).instance_count == 2
    assert _settings({"instance_count": 4}).instance_count == 4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"instance_count": 5}, "--instance-count: 5 instances: at most 4 run locally"),
        ({"instance_count": 0}, "--instance-count: 0 instances: an endpoint has at least one"),
        (
            {"instance_count": 2, "runtime": "docker"},
            "instance_count 2: several instances run on the embedded Triton runtime only, "
            "not with runtime 'docker'",
        ),
        (
            {"instance_count": 2, "runtime": "external", "triton_url": "http://x:1"},
            "not with runtime 'external'",
        ),
        ({"instance_count": 2, "stack": "torchserve"}, "not with the torchserve stack"),
    ],
)
def test_instance_counts_that_cannot_run_here_are_one_clear_line(
    flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        _settings(flags)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
