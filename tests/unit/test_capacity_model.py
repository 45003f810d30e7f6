"""The planner's model of a GPU instance, one rule per test, each on a workload small enough
that the right answer is worked out by hand in the comments."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mme_local.capacity.memory_model import (
    CPU,
    Allowances,
    cloud_memory,
    instance_memory,
)
from mme_local.capacity.plan import Parallelism, Targets, instance_candidates, run_plan
from mme_local.capacity.prices import load_prices
from mme_local.capacity.report import render_json, render_markdown, render_table
from mme_local.capacity.simulator import SimResult, Window, model_costs, simulate
from mme_local.capacity.workload import SyntheticSpec, Workload, synthetic
from tests.unit.capacity_support import MiB, footprint, profile, sequential

GiB = 1024 * MiB
NO_SLACK = Allowances(host_reserve_bytes=0, gpu_baseline_bytes=0, gpu_workspace_share=0.0)


def _run(workload: Workload, instance: str, allowances: Allowances, **kw: object) -> SimResult:
    prof = profile(*workload.footprints[:1])
    (candidate,) = instance_candidates(
        [instance],
        [1],
        prof,
        Parallelism(),
        60.0,
        allowances=allowances,
        **kw,  # type: ignore[arg-type]
    )
    return simulate(workload, model_costs(workload, prof, True, allowances), candidate.config)


# ----- 1. each memory holds what it holds on a GPU instance ------------------------------------


def test_a_cpu_profile_puts_the_weights_on_the_gpu_and_a_host_share_in_host_memory() -> None:
    # TorchScript, 435 MiB measured on CPU of which 350 MiB is the stub, 20 MiB extracted
    fp = replace(footprint(host_mib=435, platform="pytorch_libtorch"))
    prof = profile(fp, stub_mib=350)
    memory = cloud_memory(prof, fp, Allowances())
    # GPU: 20 MiB of parameters + 15% workspace; host: the 10 MiB share, not the 85 MiB
    assert (memory.host_bytes, memory.gpu_bytes, memory.estimated) == (10 * MiB, 23 * MiB, True)


def test_a_kind_cpu_model_holds_host_memory_only() -> None:
    fp = replace(footprint(host_mib=435, platform="pytorch_libtorch"), instance_kind=CPU)
    memory = cloud_memory(profile(fp, stub_mib=350), fp, Allowances())
    assert (memory.host_bytes, memory.gpu_bytes, memory.estimated) == (85 * MiB, 0, False)


def test_a_gpu_profile_replaces_the_estimates() -> None:
    fp = footprint(host_mib=30, gpu_mib=500)
    memory = cloud_memory(profile(fp), fp, Allowances())
    assert (memory.host_bytes, memory.gpu_bytes, memory.estimated) == (30 * MiB, 500 * MiB, False)


def test_weights_count_against_the_gpu_only() -> None:
    # 100 MiB measured on CPU per model, 20 MiB of parameters: on the GPU 20 + 1004 = 1024 MiB
    # each, so a T4's 15,360 MiB holds exactly 15 with no baseline. The host holds 10 MiB
    # shares: 15 models never touch its budget (it would, at 100 MiB each, under 1,700 MiB).
    allowances = replace(NO_SLACK, gpu_workspace_bytes=1004 * MiB)
    models = list(range(15)) * 2
    result = _run(sequential(models), "ml.g4dn.xlarge", allowances)
    assert (result.loads, result.unloads, result.hits, result.rejected_loads) == (15, 0, 15, 0)
    assert result.peak_gpu_bytes == 15 * GiB
    assert result.peak_host_bytes == 200 * MiB + 15 * 10 * MiB


# ----- 6. budgets keep room for what is not a model --------------------------------------------


def test_instance_budgets_take_the_reserve_and_the_gpu_baseline() -> None:
    memory = instance_memory(16 * GiB, 15_360 * MiB, profile(), Allowances())
    assert memory.host_budget_bytes == 14 * GiB  # 16 GiB less the 2 GiB reserve
    assert (memory.base_gpu_bytes, memory.gpu_base_measured) == (2_900_000_000, False)
    measured = replace(profile(), baseline_gpu_bytes=300 * MiB)
    assert instance_memory(16 * GiB, 15_360 * MiB, measured, Allowances()).base_gpu_bytes == (
        300 * MiB
    )


def test_the_gpu_baseline_leaves_room_for_one_model_less() -> None:
    # as above, 15 models of 1 GiB fit a T4 with no baseline; with the 1 GiB default only 14:
    # the cycle 0..14, 0..14 then misses every time (LRU): 30 loads, 16 unloads. The 15th
    # model's first load doesn't know its size yet, so the container answers it 507 once.
    allowances = replace(NO_SLACK, gpu_workspace_bytes=1004 * MiB, gpu_baseline_bytes=1 * GiB)
    result = _run(sequential(list(range(15)) * 2), "ml.g4dn.xlarge", allowances)
    assert (result.loads, result.unloads, result.hits, result.rejected_loads) == (30, 16, 0, 1)
    assert result.peak_gpu_bytes == 15 * GiB


# ----- 5. loads that can't fit: 507, unloads, errors ------------------------------------------


def test_loads_that_do_not_fit_are_answered_507_and_make_room() -> None:
    # 20 models of 3 GiB (20 MiB + 3,052 MiB workspace) on an A10G (23,028 MiB) with a 1 GiB
    # baseline: 7 fit (1 + 7 x 3 = 22 GiB). Each later first load gets a 507, unloads the
    # least recently used model and loads once more: 13 rejections, 13 unloads, no errors.
    allowances = replace(NO_SLACK, gpu_workspace_bytes=3052 * MiB, gpu_baseline_bytes=1 * GiB)
    result = _run(sequential(list(range(20))), "ml.g5.8xlarge", allowances)
    assert (result.loads, result.rejected_loads, result.unloads, result.errors) == (20, 13, 13, 0)
    assert result.peak_gpu_bytes == 22 * GiB


def test_a_model_larger_than_the_gpu_is_answered_with_an_error() -> None:
    # 20 MiB + 30 GiB of workspace can't fit a 23,028 MiB A10G with nothing else loaded:
    # 507, no idle model to unload, the request gets the error; the next one tries again.
    allowances = replace(NO_SLACK, gpu_workspace_bytes=30 * GiB)
    result = _run(sequential([0, 0]), "ml.g5.xlarge", allowances)
    assert (result.loads, result.rejected_loads, result.errors, result.hits) == (0, 2, 2, 0)


def test_a_load_that_does_not_fit_beside_a_busy_model_gets_the_error() -> None:
    # two 12 GiB models on an A10G; a is answering a 50 s request when b arrives: 507, a is
    # pinned, so b's request gets the error.
    allowances = replace(NO_SLACK, gpu_workspace_bytes=12 * GiB - 20 * MiB)
    fp = footprint()
    workload = Workload([0.0, 5.0], [0, 1], ["a", "b"], [fp, fp], service_s=[50.0, 0.0])
    result = _run(workload, "ml.g5.xlarge", allowances)
    assert (result.loads, result.rejected_loads, result.errors) == (1, 1, 1)


def test_the_table_shows_507s_and_errors() -> None:
    allowances = replace(NO_SLACK, gpu_workspace_bytes=30 * GiB)
    workload = sequential([0, 0])
    prof = profile(workload.footprints[0])
    candidates = instance_candidates(
        ["ml.g5.xlarge"], [1], prof, Parallelism(), 60.0, allowances=allowances
    )
    plan = run_plan(workload, prof, candidates, Targets(), load_prices(), allowances)
    header, _, row = render_markdown(plan).splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert (cells["507s"], cells["errors"], cells["meets"]) == ("2", "2", "no")
    assert json.loads(render_json(plan))["candidates"][0]["rejected_loads"] == 2


# ----- 3. --model-cache Disabled for instance candidates ---------------------------------------


def test_a_disabled_model_cache_applies_to_instance_candidates() -> None:
    # Disabled: each of the three requests downloads, loads, unloads and deletes its model
    workload = sequential([0, 0, 0])
    on = _run(workload, "ml.g5.xlarge", Allowances())
    off = _run(workload, "ml.g5.xlarge", Allowances(), cache_enabled=False)
    assert (on.hits, on.loads, on.downloads) == (2, 1, 1)
    assert (off.hits, off.loads, off.unloads, off.downloads) == (0, 3, 3, 3)
    prof = profile()
    (candidate,) = instance_candidates(
        ["ml.g5.xlarge"], [1], prof, Parallelism(), 60.0, cache_enabled=False
    )
    assert candidate.label == "ml.g5.xlarge x1 (cache disabled)"


# ----- 2. warm-up apart from steady state ------------------------------------------------------


def test_warm_up_ends_when_every_model_has_loaded_and_is_reported_apart() -> None:
    # 4 models, one request every 10 s: 0,1,2,3 then 0,1,2,3. Model 3 arrives at 30 s and is
    # loaded at 31.5 s (0.5 s download + 1 s load): warm-up 31.5 s, 4 requests. After it:
    # 4 hits of 4, p99 0; over the whole run: 4 of 8.
    result = _run(sequential([0, 1, 2, 3, 0, 1, 2, 3]), "ml.g5.xlarge", Allowances())
    assert result.warmup_s == pytest.approx(31.5)
    assert result.warmup_requests == 4
    assert result.steady is not None
    assert (result.steady.requests, result.steady.hits, result.steady.loads) == (4, 4, 0)
    assert result.steady.wait_p99_s == 0.0
    assert result.hit_ratio == 0.5
    assert Targets(hit_ratio=0.9).met_by(result)
    assert not Targets(hit_ratio=0.9, include_warmup=True).met_by(result)


def test_warm_up_ends_at_the_first_eviction_when_not_every_model_fits() -> None:
    # a 100 MiB host budget... here the count of GPU room: 2 models of 7 GiB fit an A10G
    # (1 GiB baseline + 14 GiB); the third, at 20 s, gets a 507 and unloads model 0 at once
    # (its unload: 0.1 s, then the load once more): warm-up ends at the eviction, 20 s + 0.5 s
    # download + 1 s of failed load.
    allowances = replace(NO_SLACK, gpu_workspace_bytes=7 * GiB - 20 * MiB, gpu_baseline_bytes=GiB)
    result = _run(sequential([0, 1, 2, 2, 2]), "ml.g5.xlarge", allowances)
    assert result.warmup_s == pytest.approx(21.5)
    assert result.warmup_requests == 3
    assert result.steady is not None and result.steady.hits == 2


def test_a_run_that_never_warms_up_is_judged_whole() -> None:
    # the only model can't fit: it never loads and nothing is evicted, so the warm-up never
    # ends; a run whose last model loads after the last request has no steady requests
    allowances = replace(NO_SLACK, gpu_workspace_bytes=30 * GiB)
    never = _run(sequential([0, 0]), "ml.g5.xlarge", allowances)
    assert (never.warmup_s, never.steady, never.warmup_requests) == (None, None, 2)
    assert never.judged(False) == never.whole
    late = _run(sequential([0, 1]), "ml.g5.xlarge", Allowances())
    assert late.warmup_s == pytest.approx(11.5)
    assert late.steady is not None and late.steady.requests == 0
    assert late.judged(False) == late.whole


# ----- 7. no target still limits 429s and errors -----------------------------------------------


def _result(requests: int, not_ready: int, errors: int) -> SimResult:
    steady = Window(requests, requests - not_ready - errors, not_ready, errors, 0, 100.0, 0, 0)
    return SimResult(
        requests, 0, 0, 0, 0, 0, 0, 0, 100.0, 0, 0, 0, None, warmup_s=0.0, steady=steady
    )


def test_without_targets_a_candidate_with_more_than_0_1_percent_429s_or_errors_fails() -> None:
    targets = Targets()
    assert targets.met_by(_result(1000, 1, 0))  # 0.1%: meets
    assert not targets.met_by(_result(1000, 2, 0))  # 0.2% 429s
    assert not targets.met_by(_result(1000, 1, 1))  # 0.1% 429s + 0.1% errors
    assert targets.missed(_result(1000, 0, 2)) == ["429s and errors 0.20% of requests > 0.10%"]
    assert Targets(max_failed_share=0.01).met_by(_result(1000, 5, 5))


# ----- 8. prices labelled unverified -----------------------------------------------------------


def test_shipped_prices_are_unverified_until_a_price_file_replaces_them(tmp_path: Path) -> None:
    assert not load_prices().verified
    override = tmp_path / "prices.toml"
    override.write_text('as_of = "2026-12-01"\n[prices]\n"ml.g5.xlarge" = 1.41\n')
    table = load_prices(override)
    assert table.is_verified("ml.g5.xlarge") and not table.is_verified("ml.g4dn.xlarge")
    override.write_text('verified = false\n[prices]\n"ml.g5.xlarge" = 1.41\n')
    assert not load_prices(override).is_verified("ml.g5.xlarge")


def test_every_output_marks_unverified_prices(tmp_path: Path) -> None:
    workload = sequential([0, 1, 0])
    prof = profile(workload.footprints[0])
    candidates = instance_candidates(
        ["ml.g4dn.xlarge", "ml.g5.xlarge"], [1], prof, Parallelism(), 60.0
    )
    override = tmp_path / "prices.toml"
    override.write_text('[prices]\n"ml.g5.xlarge" = 1.41\n')
    plan = run_plan(workload, prof, candidates, Targets(), load_prices(override))
    table = render_table(plan)
    assert "0.736*" in table and "1.410 " in table + " "
    assert "* unverified: written from memory" in table
    rows = {c["label"]: c for c in json.loads(render_json(plan))["candidates"]}
    assert rows["ml.g4dn.xlarge x1"]["price_verified"] is False
    assert rows["ml.g5.xlarge x1"]["price_verified"] is True


def test_the_profiler_reads_where_a_config_places_its_instances(tmp_path: Path) -> None:
    from mme_local.capacity.profiler import _instance_count, _instance_kind

    (tmp_path / "m").mkdir()
    config = tmp_path / "m" / "config.pbtxt"
    config.write_text('platform: "pytorch_libtorch"\n')
    assert _instance_kind(tmp_path) is None
    config.write_text("instance_group [ { count: 2 kind: KIND_GPU } ]\n")
    assert _instance_kind(tmp_path) == "KIND_GPU"
    config.write_text("instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n")
    assert _instance_kind(tmp_path) == "KIND_CPU"
    assert _instance_count(tmp_path) == 1
    config.write_text("instance_group [ { count: 2 kind: KIND_GPU }, { count: 1 } ]\n")
    assert _instance_count(tmp_path) == 3
    config.write_text('platform: "onnxruntime_onnx"\n')
    assert _instance_count(tmp_path) is None


# ----- 4. queueing: a model serves as many requests at once as it has instances ---------------


def _waits(
    times: list[float], count: int = 1, instances: int = 1, busy_queue: int = 4
) -> tuple[list[float], int]:
    """Waits per request for one model (load 1 s, download 0.5 s, service 1 s) and the
    number of loads over `count` instances of an ml.g5.xlarge."""
    fp = replace(footprint(), warm_latency_s=1.0, instance_count=instances)
    workload = Workload(times, [0] * len(times), ["a"], [fp])
    prof = profile(fp)
    (candidate,) = instance_candidates(
        ["ml.g5.xlarge"], [count], prof, Parallelism(), 60.0, busy_queue=busy_queue
    )
    costs = model_costs(workload, prof, True)
    waits: list[float] = [0.0] * len(times)

    def answer(index: int, wait: float | None, how: int) -> None:
        waits[index] = -1.0 if wait is None else wait

    from mme_local.capacity.instance import Instance
    from mme_local.capacity.simulator import route

    fleet = [Instance(candidate.config, costs, answer) for _ in range(count)]
    for index, t in enumerate(times):
        route(fleet, 0, t).request(index, t, 0, 1.0)
    for inst in fleet:
        inst.advance(float("inf"))
    return waits, sum(inst.machine.loads for inst in fleet)


def test_requests_beyond_the_models_instances_queue_and_wait() -> None:
    # loaded by 1.5 s; three requests at 10 s on one instance of the model: served at 10, 11
    # and 12 s (1 s each), so they wait 0, 1 and 2 s
    waits, loads = _waits([0.0, 10.0, 10.0, 10.0])
    assert waits == [1.5, 0.0, 1.0, 2.0]
    assert loads == 1


def test_a_model_with_two_instances_serves_two_at_once() -> None:
    waits, _ = _waits([0.0, 10.0, 10.0, 10.0], instances=2)
    assert waits == [1.5, 0.0, 0.0, 1.0]


def test_a_model_is_busy_by_its_queue_length_and_the_threshold_is_configurable() -> None:
    # two instances of the endpoint; at 10 s, four requests: the first is served at once, the
    # next two queue (2 waiting). With --busy-queue 2 the fourth goes to the other instance,
    # which loads the model (1.5 s); with 3 it queues on the first (waits 3 s).
    waits, loads = _waits([0.0, 10.0, 10.0, 10.0, 10.0], count=2, busy_queue=2)
    assert (waits[4], loads) == (1.5, 2)
    waits, loads = _waits([0.0, 10.0, 10.0, 10.0, 10.0], count=2, busy_queue=3)
    assert (waits[4], loads) == (3.0, 1)


def test_a_request_queued_past_sagemakers_60_s_gets_an_error() -> None:
    # service 1 s, one instance of the model: 62 requests at 10 s. The 61st begins at 70 s
    # and would answer at 71 s, past 10 + 60: it and the 62nd get the error (a cache hit all
    # the same), after 59 s of waiting (the 60 s less its own service)
    waits, _ = _waits([0.0] + [10.0] * 62)
    assert waits[1:3] == [0.0, 1.0] and waits[60] == 59.0
    assert waits[61] == waits[62] == 59.0
    fp = replace(footprint(), warm_latency_s=1.0)
    result = _run(
        Workload([0.0] + [10.0] * 62, [0] * 63, ["a"], [fp]), "ml.g5.xlarge", Allowances()
    )
    assert (result.hits, result.errors) == (62, 2)
    assert result.steady is not None and result.steady.errors == 2


def test_cli_memory_flags_reach_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from mme_local.cli.app import app
    from mme_local.cli.errors import run_app

    path = tmp_path / "p.json"
    profile().save(path)
    args = ["--profile", str(path), "--models", "3", "--requests", "30", "--format", "json"]
    flags = ["--gpu-workspace", "64MiB", "--gpu-baseline", "1GiB", "--instances", "ml.g5.xlarge"]
    monkeypatch.setattr(sys, "argv", ["mme-local", "capacity", "plan", *args, *flags])
    run_app(app)
    notes = " ".join(json.loads(capsys.readouterr().out)["notes"])
    assert "plus 64 MiB of workspace" in notes and "1024 MiB, not measured" in notes
    monkeypatch.setattr(
        sys, "argv", ["mme-local", "capacity", "plan", *args, "--gpu-workspace", "lots%"]
    )
    with pytest.raises(SystemExit):
        run_app(app)
    assert "--gpu-workspace 'lots%'" in capsys.readouterr().err


# ----- 9. invocations that wait for loads and unloads ------------------------------------------


def _cold_then_other(version: str, stall_share: float) -> list[float]:
    """Cache disabled: model a (at 0 s) loads by 1.5 s, answers in 10 ms, then unloads for
    5 s (until 6.51 s); model b, asked at 2 s, is downloaded and loaded by 3.5 s."""
    from mme_local.capacity.instance import Instance

    fp = footprint(load_s=1.0, download_s=0.5, unload_s=5.0)
    workload = Workload([0.0, 2.0], [0, 1], ["a", "b"], [fp, fp])
    prof = profile(fp)
    (candidate,) = instance_candidates(
        ["ml.g5.xlarge"],
        [1],
        prof,
        Parallelism(),
        60.0,
        cache_enabled=False,
        triton_version=version,
        stall_share=stall_share,
    )
    waits = [0.0, 0.0]

    def answer(index: int, wait: float | None, how: int) -> None:
        waits[index] = -1.0 if wait is None else wait

    inst = Instance(candidate.config, model_costs(workload, prof, True), answer)
    for index, (t, model) in enumerate(zip(workload.times, workload.models, strict=True)):
        inst.request(index, t, model, 0.01)
    inst.advance(float("inf"))
    return waits


def test_from_triton_25_12_every_invocation_waits_for_an_unload_in_flight() -> None:
    # b is ready at 3.5 s but waits for a's unload to end at 6.51 s: 4.51 s after asking
    assert _cold_then_other("25.12", 0.0) == [1.5, pytest.approx(4.51)]
    assert _cold_then_other("24.09", 0.0) == [1.5, 1.5]


def test_a_request_on_the_thread_running_an_unload_waits_in_every_version() -> None:
    # every request arriving during a load or unload waits for one of them (share 1): b's
    # only one in flight at 3.5 s is a's unload
    assert _cold_then_other("24.09", 1.0) == [1.5, pytest.approx(4.51)]


def test_a_bad_triton_version_gets_one_line() -> None:
    from mme_local.capacity.errors import CapacityError

    with pytest.raises(CapacityError, match=r"not a release like 24\.09"):
        instance_candidates(
            ["ml.g5.xlarge"], [1], profile(), Parallelism(), 60.0, triton_version="x"
        )


# ----- the model's invariants over random workloads ---------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    models=st.integers(1, 12),
    requests=st.integers(1, 150),
    rate=st.floats(0.2, 50.0),
    gib=st.integers(1, 9),
    count=st.integers(1, 3),
    instances=st.integers(1, 3),
    stall=st.sampled_from([0.0, 0.5, 1.0]),
    version=st.sampled_from(["24.09", "25.12"]),
    seed=st.integers(0, 5),
)
def test_every_request_is_answered_once_and_memory_never_passes_the_gpu(
    models: int,
    requests: int,
    rate: float,
    gib: int,
    count: int,
    instances: int,
    stall: float,
    version: str,
    seed: int,
) -> None:
    # models of `gib` GiB on an A10G (23,028 MiB, 2.9 GB kept back): from 7 fitting to 2
    fp = replace(footprint(), warm_latency_s=0.05, instance_count=instances)
    prof = profile(fp)
    workload = synthetic(SyntheticSpec(models, requests, 1.0, rate, seed=seed), prof)
    allowances = replace(Allowances(), gpu_workspace_share=0.0, gpu_workspace_bytes=gib * GiB)
    candidates = instance_candidates(
        ["ml.g5.xlarge"],
        [count],
        prof,
        Parallelism(),
        60.0,
        allowances=allowances,
        triton_version=version,
        stall_share=stall,
    )
    costs = model_costs(workload, prof, True, allowances)
    result = simulate(workload, costs, candidates[0].config)
    # the GPU never holds more than it has: loads that don't fit are refused (507)
    assert result.peak_gpu_bytes is not None
    assert result.peak_gpu_bytes <= 23_028 * MiB
    # every request is answered exactly once: a hit, a cold start, a 429 or an error
    from mme_local.capacity.instance import Instance
    from mme_local.capacity.simulator import route

    answers = [0] * requests

    def answer(index: int, wait: float | None, how: int) -> None:
        answers[index] += 1

    fleet = [Instance(candidates[0].config, costs, answer) for _ in range(count)]
    for index, (t, model) in enumerate(zip(workload.times, workload.models, strict=True)):
        route(fleet, model, t).request(index, t, model, 0.05)
    for inst in fleet:
        inst.advance(float("inf"))
    assert answers == [1] * requests
    whole = result.whole
    assert result.hits + result.not_ready <= requests
    assert result.errors <= requests - result.not_ready
    # the steady state is the requests after the warm-up, and nothing else
    if result.steady is not None:
        assert result.steady.requests + result.warmup_requests == requests
        assert result.steady.hits <= result.hits
        assert result.steady.loads <= result.loads
    else:
        assert result.warmup_requests == requests and result.judged(False) == whole
    # added latency never exceeds a wait for the model plus SageMaker's 60 s
    assert result.wait_p99_s <= 60.0 + 60.0


def test_the_html_page_marks_unverified_prices_too() -> None:
    from mme_local.capacity.html_report import report_data

    workload = sequential([0, 1, 0])
    prof = profile(workload.footprints[0])
    candidates = instance_candidates(["ml.g5.xlarge"], [1], prof, Parallelism(), 60.0)
    plan = run_plan(workload, prof, candidates, Targets(), load_prices())
    data = report_data(plan, workload, prof)
    assert data["notes"][0].startswith("* unverified price")
    assert data["candidates"][0]["price_verified"] is False
