"""Profile, trace, workload and price files: round trips, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.plan import Parallelism, instance_candidates, parse_counts
from mme_local.capacity.prices import load_prices
from mme_local.capacity.profile import Profile, load_profile
from mme_local.capacity.simulator import SimConfig
from mme_local.capacity.trace import TraceRecord, TraceWriter, read_trace, read_trace_file
from mme_local.capacity.workload import SyntheticSpec, Workload, from_trace, synthetic
from mme_local.demo.workload import zipf_workload
from mme_local.gateway.service import InvocationRecord
from mme_local.instances import INSTANCE_TYPES
from tests.unit.capacity_support import footprint, profile


def _one_line(error: pytest.ExceptionInfo[CapacityError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_profile_round_trips(tmp_path: Path) -> None:
    original = profile(footprint(["a.tar.gz", "b.tar.gz"]), stub_mib=300)
    original.save(tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == original


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "does not exist"),
        ("{not json", "not readable JSON"),
        ('{"artifacts": []}', "not a capacity profile"),
    ],
)
def test_bad_profiles_get_one_line(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CapacityError) as raised:
        load_profile(path)
    assert says in _one_line(raised)


def test_a_profile_without_artifacts_is_refused(tmp_path: Path) -> None:
    data = json.loads(json.dumps(profile().__dict__, default=lambda o: o.__dict__))
    data["artifacts"] = []
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(CapacityError) as raised:
        load_profile(tmp_path / "p.json")
    assert "no artifacts" in _one_line(raised)


def test_trace_writer_and_reader_agree(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "t.jsonl")
    writer.write(InvocationRecord(10.5, "b.tar.gz", 200, False, 1.5, 0.01))
    writer.write(InvocationRecord(10.0, "a.tar.gz", 429, None, 60.0, 0.0))
    writer.close()
    assert read_trace(tmp_path / "t.jsonl") == [
        TraceRecord(10.0, "a.tar.gz", 429, None, 60.0, 0.0),
        TraceRecord(10.5, "b.tar.gz", 200, False, 1.5, 0.01),
    ]


def test_an_empty_trace_gets_one_line(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("\n")
    with pytest.raises(CapacityError) as raised:
        read_trace(tmp_path / "t.jsonl")
    assert "is empty" in _one_line(raised)


@pytest.mark.parametrize(
    "bad",
    [
        '{"time": 2}',
        # A bad load or unload line used to be skipped without a word, and the replay ran
        # without that call.
        '{"time": 2, "unloaded": "a"}',
    ],
)
def test_a_bad_trace_line_is_named(tmp_path: Path, bad: str) -> None:
    good = '{"time": 1, "target_model": "a", "status": 200}'
    (tmp_path / "t.jsonl").write_text(f"{good}\n{bad}\n")
    with pytest.raises(CapacityError) as raised:
        read_trace_file(tmp_path / "t.jsonl")
    assert "line 2" in _one_line(raised)


def test_a_plan_reads_its_trace_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mme_local.capacity import trace as trace_module
    from mme_local.capacity.api import PlanRequest, workload_for

    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"time": 1, "target_model": "model-0.tar.gz", "status": 200, "cache_hit": false}\n'
        '{"time": 2, "loaded": "model-0.tar.gz", "load_s": 1.5}\n'
    )
    reads: list[Path] = []
    read_file = trace_module.read_trace_file

    def counting(path: Path) -> trace_module.Trace:
        reads.append(path)
        return read_file(path)

    monkeypatch.setattr("mme_local.capacity.api.read_trace_file", counting)
    workload = workload_for(PlanRequest(profile=tmp_path / "unused", trace=path), profile())
    assert reads == [path]
    loads = workload.loads or {}
    assert len(workload) == 1 and len(loads) == 1


def test_a_trace_model_the_profile_lacks_is_named() -> None:
    records = [TraceRecord(0.0, "model-0.tar.gz", 200, False, 1.0, 0.0)]
    records.append(TraceRecord(1.0, "other.tar.gz", 200, False, 1.0, 0.0))
    with pytest.raises(CapacityError) as raised:
        from_trace(records, profile(), "t.jsonl")
    assert "'other.tar.gz'" in _one_line(raised)


def test_rejected_requests_are_not_replayed() -> None:
    records = [
        TraceRecord(0.0, "missing.tar.gz", 400, None, 0.0, 0.0),
        TraceRecord(1.0, "model-0.tar.gz", 200, False, 1.0, 0.01),
    ]
    workload = from_trace(records, profile(), "t")
    assert workload.names == ["model-0.tar.gz"]
    assert workload.times == [0.0]
    # a trace from before own download and load times were recorded: the wait stands in
    assert workload.cold_work_s == [(0.0, 1.0)]


def test_a_cold_start_replays_its_own_download_and_load_not_its_queueing() -> None:
    records = [
        TraceRecord(0.0, "model-0.tar.gz", 200, False, 5.0, 0.01, download_s=0.25, load_s=1.5),
        TraceRecord(1.0, "model-0.tar.gz", 200, True, 0.0, 0.01),
    ]
    workload = from_trace(records, profile(), "t")
    assert workload.cold_work_s == [(0.25, 1.5), None]


def test_synthetic_zipf_names_the_demos_models() -> None:
    spec = SyntheticSpec(models=200, requests=300, zipf=1.1, rate_rps=5.0, seed=7)
    assert synthetic(spec, profile()).models == zipf_workload(200, 300, 1.1, 7)


def test_synthetic_traffic_copies_one_footprint() -> None:
    spec = SyntheticSpec(models=50, requests=1000, zipf=None, rate_rps=100.0, seed=1)
    workload = synthetic(spec, profile())
    assert len(set(workload.models)) > 40
    assert len(workload.footprints) == 50
    assert workload.duration_s == pytest.approx(10.0, rel=0.2)


def test_synthetic_traffic_names_a_missing_artifact() -> None:
    spec = SyntheticSpec(1, 1, None, 1.0, artifact="nope.tar.gz")
    with pytest.raises(CapacityError) as raised:
        synthetic(spec, profile())
    assert "'nope.tar.gz'" in _one_line(raised)


def test_unknown_instance_type_gets_one_line() -> None:
    with pytest.raises(CapacityError) as raised:
        instance_candidates(["ml.g9.xlarge"], [1], profile(), Parallelism(), 60.0)
    text = _one_line(raised)
    assert "ml.g9.xlarge" in text and "ml.g5" in text


@pytest.mark.parametrize(("text", "counts"), [("2", [2]), ("1..3", [1, 2, 3]), ("1,4", [1, 4])])
def test_counts(text: str, counts: list[int]) -> None:
    assert parse_counts(text) == counts


def test_bad_counts_get_one_line() -> None:
    with pytest.raises(CapacityError):
        parse_counts("0..2")
    with pytest.raises(CapacityError):
        parse_counts("two")


def test_the_price_table_is_dated_and_covers_every_instance_type() -> None:
    table = load_prices()
    assert table.region == "us-east-1"
    assert table.as_of and table.source.startswith("https://aws.amazon.com/sagemaker/pricing")
    assert set(INSTANCE_TYPES) <= set(table.prices)


def test_a_price_file_overrides_ours(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text('region = "eu-west-1"\n[prices]\n"ml.g5.xlarge" = 2.0\n')
    table = load_prices(override)
    assert table.hourly("ml.g5.xlarge") == 2.0
    assert table.hourly("ml.g4dn.xlarge") == load_prices().hourly("ml.g4dn.xlarge")
    assert table.region == "eu-west-1"
    assert table.source == str(override)


def test_a_bad_price_file_gets_one_line(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text('[prices]\n"ml.g5.xlarge" = "cheap"\n')
    with pytest.raises(CapacityError) as raised:
        load_prices(override)
    assert "dollars per hour" in _one_line(raised)


def test_recorded_unloads_are_read_apart_and_replayed_per_instance_and_model(
    tmp_path: Path,
) -> None:
    from mme_local.cache.records import LoadRecord, UnloadRecord
    from mme_local.capacity.trace import TraceWriter, read_control_calls, read_trace

    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(path)
    writer.write(TraceRecord(0.0, "model-0.tar.gz", 200, False, 1.0, 0.01, 0.0, 1.0))
    writer.write(UnloadRecord(3.0, "model-0.tar.gz", 2.5, instance=1))
    writer.write(UnloadRecord(2.0, "model-0.tar.gz", 1.5, instance=1))
    writer.write(TraceRecord(4.0, "model-0.tar.gz", 200, False, 1.0, 0.01, 0.0, 1.0))
    writer.write(LoadRecord(1.0, "model-0.tar.gz", 1.0, instance=0))
    writer.close()
    assert [r.time for r in read_trace(path)] == [0.0, 4.0]
    calls = read_control_calls(path)
    assert [type(c).__name__ for c in calls] == ["LoadRecord", "UnloadRecord", "UnloadRecord"]
    assert [c.unload_s for c in calls if isinstance(c, UnloadRecord)] == [1.5, 2.5]  # as ended
    workload = from_trace(read_trace(path), profile(), "t", calls)
    assert workload.unloads is not None and workload.loads is not None
    assert [u.unload_s for u in workload.unloads[1, 0]] == [1.5, 2.5]
    assert [u.time for u in workload.unloads[1, 0]] == [2.0, 3.0]  # from the first request
    assert [(c.time, c.measure_s) for c in workload.loads[0, 0]] == [(1.0, None)]


def _three_models_one_eviction(
    load_end: float | None, done_at: list[float | None] | None, measure_s: float | None = None
) -> int:
    """Hits of a replay where model-0 is the least recently used model but busy until 10.0 s
    (by reckoning) when model-1's load ends (8.0 s + 1.999 s, by reckoning). Measured over
    the budget at its end, model-1 evicts the least recently used idle model: model-0 if its
    request has ended by then (model-2 is a hit at 12 s: 3 hits), else model-2 (2 hits)."""
    from dataclasses import replace

    from mme_local.cache.records import LoadRecord
    from mme_local.capacity.plan import emulator_candidate
    from mme_local.capacity.simulator import model_costs, simulate
    from mme_local.capacity.workload import Workload
    from tests.unit.capacity_support import MiB

    names = ["model-0.tar.gz", "model-1.tar.gz", "model-2.tar.gz"]
    prof = profile(footprint(names, host_mib=100, load_s=1.0, download_s=0.0))
    requests = [  # (time, model, service s, recorded (download s, load s) of a cold start)
        (0.0, 0, 0.01, (0.0, 1.0)),
        (2.0, 2, 0.01, (0.0, 1.0)),
        (4.0, 0, 6.0, None),
        (5.0, 2, 0.01, None),
        (8.0, 1, 0.01, (0.0, 1.999)),
        (12.0, 2, 0.01, None),
    ]
    workload = Workload(
        times=[r[0] for r in requests],
        models=[r[1] for r in requests],
        names=names,
        footprints=[prof.artifacts[0]] * 3,
        service_s=[r[2] for r in requests],
        cold_work_s=[r[3] for r in requests],
    )
    loads = None
    if load_end is not None or measure_s is not None:
        # model-1's load, as recorded: its end (else the reckoned one) and its measurement
        recorded = LoadRecord(9.999 if load_end is None else load_end, names[1], 1.999)
        loads = {(0, 1): [replace(recorded, measure_s=measure_s)]}
    workload = replace(workload, loads=loads, done_at=done_at)
    budget = prof.baseline_host_bytes + 250 * MiB  # two models and a half
    config = emulator_candidate(prof, None, budget, None, 60.0, parallel=Parallelism(1, 1)).config
    return simulate(workload, model_costs(workload, prof, False), config).hits


def test_a_replayed_load_ends_at_its_recorded_end_so_requests_around_it_keep_their_order() -> None:
    """Recorded 2 ms after model-0's request ended, the load ends then, not 1 ms before."""
    assert _three_models_one_eviction(None, None) == 2
    assert _three_models_one_eviction(10.002, None) == 3


def test_a_replayed_request_ends_at_its_recorded_end_so_calls_around_it_keep_their_order() -> None:
    """Recorded 10 ms before model-1's load ended, model-0's request ends then, not 1 ms after."""
    done_at: list[float | None] = [None, None, 9.989, None, None, None]
    assert _three_models_one_eviction(None, done_at) == 3
    # beyond the snap window, the reckoning stands: the recorded end is another run's
    done_at[2] = 9.9
    assert _three_models_one_eviction(None, done_at) == 2


def test_a_replayed_load_is_measured_as_long_after_its_end_as_recorded() -> None:
    """The live cache measures a model's memory some milliseconds after its load ends; model-1
    over the budget evicts what is idle then: model-0, whose request ended meanwhile."""
    assert _three_models_one_eviction(None, None, measure_s=0.01) == 3
    assert _three_models_one_eviction(None, None, measure_s=0.0) == 2


def _two_models_room_for_two_and_a_half() -> tuple[list[str], Profile, Workload, SimConfig]:
    """model-0, model-1, model-0 (5 s apart), each cold: 100 MiB each by the profile, under
    a memory budget of the baseline plus 250 MiB (the emulator's own budgets)."""
    from mme_local.capacity.plan import emulator_candidate
    from tests.unit.capacity_support import MiB

    names = ["model-0.tar.gz", "model-1.tar.gz"]
    prof = profile(footprint(names, host_mib=100, load_s=1.0, download_s=0.0))
    workload = Workload(
        times=[0.0, 5.0, 10.0],
        models=[0, 1, 0],
        names=names,
        footprints=[prof.artifacts[0]] * 2,
        service_s=[0.01] * 3,
        cold_work_s=[(0.0, 1.0), (0.0, 1.0), None],
    )
    budget = prof.baseline_host_bytes + 250 * MiB
    return names, prof, workload, emulator_candidate(prof, None, budget, None, 60.0).config


def test_a_replayed_load_takes_the_memory_the_live_cache_measured_and_its_base() -> None:
    """The profile says two models fit; the recorded run measured model-1 larger, or counted
    the server's own memory higher after it: model-0 goes, and its next request is cold."""
    from dataclasses import replace

    from mme_local.cache.records import LoadRecord
    from mme_local.capacity.simulator import model_costs, simulate
    from tests.unit.capacity_support import MiB

    names, prof, workload, config = _two_models_room_for_two_and_a_half()
    model_1 = LoadRecord(6.0, names[1], 1.0)
    hits = []
    for recorded in (
        model_1,
        replace(model_1, memory_bytes=200 * MiB),
        replace(model_1, base_bytes=prof.baseline_host_bytes + 100 * MiB),
    ):
        run = replace(workload, loads={(0, 1): [recorded]})
        hits.append(simulate(run, model_costs(run, prof, False), config).hits)
    assert hits == [1, 0, 0]


def test_a_recorded_load_far_from_the_replayed_one_lends_it_nothing() -> None:
    """A recorded load more than 50 ms from the replay's reckoning is another call (a load
    that failed live has no record; a diverged replay loads others): its end, measured memory
    and base are not taken, and the profile's figures stand."""
    from dataclasses import replace

    from mme_local.cache.records import LoadRecord
    from mme_local.capacity.simulator import model_costs, simulate
    from tests.unit.capacity_support import MiB

    names, prof, workload, config = _two_models_room_for_two_and_a_half()
    for end in (6.0, 6.04, 6.06, 30.0):  # the reckoned end is 6.0 s
        elsewhere = LoadRecord(end, names[1], 1.0, memory_bytes=200 * MiB)
        run = replace(workload, loads={(0, 1): [elsewhere]})
        hits = simulate(run, model_costs(run, prof, False), config).hits
        assert hits == (0 if end <= 6.04 else 1), end
