"""Proof that the simulator predicts: a real emulator run, recorded with a trace and replayed.

The profile comes from `capacity profile` on the real Triton; the trace from `up --trace`'s
observer on a real emulator serving real boto3 calls. Under the same count budget the replay
must reproduce the emulator's hits, loads, unloads and downloads exactly; for a run of two
instances with two clients at once (`up --instance-count 2`), within 5%.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mme_local.background import RunningEmulator
from mme_local.cache.records import UnloadRecord
from mme_local.capacity.api import EmulatorBudgets, PlanRequest, make_plan
from mme_local.capacity.trace import read_control_calls, read_trace
from mme_local.capacity.workload import zipf_sequence
from mme_local.settings import EmulatorSettings
from tests.support import doubler_archive, kserve_body

pytestmark = pytest.mark.integration

COPIES = 6
BUDGET = 2


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One doubler artifact published as COPIES TargetModels with the same bytes."""
    source = doubler_archive(tmp_path_factory.mktemp("source"), "doubler.tar.gz")
    folder = tmp_path_factory.mktemp("copies")
    for i in range(COPIES):
        shutil.copy(source, folder / f"model-{i}.tar.gz")
    return folder


@pytest.fixture(scope="module")
def profile_file(copies: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mme-local capacity profile` run as a user runs it."""
    work = tmp_path_factory.mktemp("profile")
    (work / "request.json").write_bytes(kserve_body([1.0, 2.0]))
    path = work / "profile.json"
    command = [str(Path(sys.executable).with_name("mme-local")), "capacity", "profile"]
    arguments = [str(copies), "--sample", str(work / "request.json"), "--repeats", "3"]
    done = subprocess.run(
        [*command, *arguments, "--out", str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {path}: 1 distinct artifact(s)" in done.stdout
    # Each distinct artifact's figures are printed, not only the file's name.
    header, _, row = done.stdout.splitlines()[:3]
    assert header.split()[:6] == ["artifact", "models", "platform", "archive", "MiB", "extracted"]
    assert row.split()[:3] == ["model-0.tar.gz", str(COPIES), "python"]
    return path


def test_profile_measures_the_copies_once(profile_file: Path) -> None:
    from mme_local.capacity.profile import load_profile

    profile = load_profile(profile_file)
    (artifact,) = profile.artifacts
    assert artifact.target_models == [f"model-{i}.tar.gz" for i in range(COPIES)]
    assert artifact.platform == "python"
    assert artifact.load_s > 0 and artifact.download_s > 0 and artifact.unload_s > 0
    assert artifact.host_memory_bytes > 0
    assert artifact.extracted_bytes > 0 and artifact.archive_bytes > 0
    assert artifact.warm_latency_s is not None and artifact.warm_latency_s > 0
    assert profile.stub_host_bytes > 0
    assert profile.baseline_host_bytes > 0
    # a Python-backend model runs in its own stub in the cloud too: no correction
    assert profile.cloud_host_bytes(artifact) == artifact.host_memory_bytes


def _recording(copies: Path, tmp_path: Path, trace: Path, **budget: int) -> EmulatorSettings:
    """An endpoint serving the copies under `budget`, tracing every invocation to `trace`."""
    return EmulatorSettings(
        port=0, models_dir=copies, trace_file=trace, cache_dir=tmp_path / "cache", **budget
    )


def _send(
    running: RunningEmulator, sequence: list[int], gap_s: float = 0.0, start_s: float = 0.0
) -> None:
    client = running.runtime_client()
    time.sleep(start_s)
    for model in sequence:
        if gap_s:
            time.sleep(gap_s)
        client.invoke_endpoint(
            EndpointName=running.endpoint_name,
            TargetModel=f"model-{model}.tar.gz",
            Body=kserve_body([1.0]),
            ContentType="application/octet-stream",
        )


def test_replay_reproduces_a_recorded_run_under_a_count_budget(
    copies: Path, profile_file: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    settings = _recording(copies, tmp_path, trace, max_loaded_models=BUDGET)
    sequence = zipf_sequence(COPIES, 24, 0.8, seed=7).tolist()
    with RunningEmulator(settings) as running:
        _send(running, sequence)
        with pytest.raises(ClientError):
            running.runtime_client().invoke_endpoint(
                EndpointName=running.endpoint_name,
                TargetModel="not-published.tar.gz",
                Body=kserve_body([1.0]),
            )
        running.settle()
        hits = running.metrics()["mme_model_cache_hit_total"]
        entries = running.emulator.cache.entries()
        measured = {
            "hits": int(hits),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }
    *records, missing = read_trace(trace)
    assert (missing.target_model, missing.status, missing.cache_hit) == (
        "not-published.tar.gz",
        400,
        None,
    )
    assert [r.target_model for r in records] == [f"model-{m}.tar.gz" for m in sequence]
    assert all(r.status == 200 and r.model_s > 0 for r in records)
    assert sum(bool(r.cache_hit) for r in records) == measured["hits"]
    assert measured["unloads"] > 0, "the budget must cause evictions for the test to mean much"

    plan = make_plan(
        PlanRequest(
            profile=profile_file,
            trace=trace,
            budgets=EmulatorBudgets(max_loaded_models=BUDGET),
        )
    )
    result = plan.outcomes[0].result
    predicted = {
        "hits": result.hits,
        "loads": result.loads,
        "unloads": result.unloads,
        "downloads": result.downloads,
    }
    assert predicted == measured


def test_replay_is_within_two_percent_under_a_measured_memory_budget(
    copies: Path, profile_file: Path, tmp_path: Path
) -> None:
    from mme_local.capacity.profile import load_profile

    profile = load_profile(profile_file)
    footprint = profile.artifacts[0].host_memory_bytes
    # room for two models and a half by measurement
    budget = profile.baseline_host_bytes + int(2.5 * footprint)
    trace = tmp_path / "trace.jsonl"
    settings = _recording(copies, tmp_path, trace, memory_limit_bytes=budget)
    sequence = zipf_sequence(COPIES, 20, 0.8, seed=11).tolist()
    with RunningEmulator(settings) as running:
        _send(running, sequence)
        running.settle()
        hits = running.metrics()["mme_model_cache_hit_total"]
        entries = running.emulator.cache.entries()
        measured = {
            "hits": int(hits),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }
    plan = make_plan(
        PlanRequest(
            profile=profile_file, trace=trace, budgets=EmulatorBudgets(memory_limit_bytes=budget)
        )
    )
    result = plan.outcomes[0].result
    predicted = {
        "hits": result.hits,
        "loads": result.loads,
        "unloads": result.unloads,
        "downloads": result.downloads,
    }
    assert measured["unloads"] > 0
    for name, value in measured.items():
        assert abs(predicted[name] - value) <= 0.02 * value, (name, predicted, measured)


INSTANCES = 2


def _two_instance_run(
    copies: Path, tmp_path: Path, sequences: list[list[int]], gap_s: float
) -> tuple[Path, dict[str, int]]:
    """A real `up --instance-count 2` run under the count budget (each instance its own),
    `sequences` sent by one client thread each, the clients starting half a second apart;
    the trace and the measured counts."""
    trace = tmp_path / "trace.jsonl"
    settings = _recording(
        copies, tmp_path, trace, max_loaded_models=BUDGET, instance_count=INSTANCES
    )
    with RunningEmulator(settings) as running:
        with ThreadPoolExecutor(len(sequences)) as pool:
            starts = [0.5 * k for k in range(len(sequences))]
            list(pool.map(lambda s, start: _send(running, s, gap_s, start), sequences, starts))
        running.settle()
        hits = running.metrics()["mme_model_cache_hit_total"]
        instances = [[e for e in m.cache.entries()] for m in running.emulator.instances]
    entries = [e for held in instances for e in held]
    measured = {
        "hits": int(hits),
        "loads": sum(e.loads for e in entries),
        "unloads": sum(e.unloads for e in entries),
        "downloads": sum(e.downloads for e in entries),
    }
    assert all(sum(e.loads for e in held) > 0 for held in instances), "both instances served"
    return trace, measured


def _replayed(profile_file: Path, trace: Path) -> dict[str, int]:
    plan = make_plan(
        PlanRequest(
            profile=profile_file,
            trace=trace,
            budgets=EmulatorBudgets(max_loaded_models=BUDGET),
            counts=(INSTANCES,),
        )
    )
    result = plan.outcomes[0].result
    return {
        "hits": result.hits,
        "loads": result.loads,
        "unloads": result.unloads,
        "downloads": result.downloads,
    }


def test_replay_of_a_two_instance_run_matches_within_five_percent(
    copies: Path, profile_file: Path, tmp_path: Path
) -> None:
    # More models (6) than one instance's count budget (2), a Zipf mix with hot models, sent
    # by two clients at once so that a hot model is sometimes busy on its instance.
    # 48 each: about 25 loads and 21 unloads, so that one load or unload the replay gets
    # differently stays within the 5%. The clients start apart and think 0.2 s before each
    # request, so that no two events tie within the timings' resolution. When both started
    # at once, two first downloads ended 0.5 ms apart, the replay sent their loads to Triton
    # in the other order, so the first answer ended later than recorded, the client's next
    # request found its model still busy and went to the other instance, and from there the
    # replay predicted 56 hits against 84.
    sequences = [zipf_sequence(COPIES, 48, 0.8, seed=seed).tolist() for seed in (5, 6)]
    trace, measured = _two_instance_run(copies, tmp_path, sequences, gap_s=0.2)
    records = [r for r in read_trace(trace) if r.reached_cache]
    assert {r.instance for r in records} == {0, 1}, "the trace says which instance answered"
    predicted = _replayed(profile_file, trace)
    assert measured["unloads"] > 0
    # The bar: loads, unloads and hits within 5%. Downloads (about a dozen) may be one
    # off: a model first routed to the other instance downloads there too.
    for name in ("hits", "loads", "unloads"):
        value = measured[name]
        assert abs(predicted[name] - value) <= 0.05 * value, (name, predicted, measured)
    assert abs(predicted["downloads"] - measured["downloads"]) <= 1, (predicted, measured)


CLIENTS = 8


def test_replay_of_eight_clients_at_once_under_a_memory_budget(tmp_path: Path) -> None:
    """Eight clients at once, two parallel downloads and loads, a measured-memory budget:
    the replay queues each recorded cold start's own download and load behind the others as
    the emulator did (loads and unloads take turns in Triton) and predicts the counts.

    The clients start a quarter of a second apart and think a tenth of a second between
    requests, as real clients do. Without that, eight requests sent in the same millisecond
    make two downloads or a load's end and the next arrival tie within the timings' resolution
    (a client's next request follows its answer by a millisecond): the replay then breaks
    the tie either way, and a small run's hits went 4 against 8 (`docs/benchmarks.md` has
    the back-to-back runs)."""
    from mme_local.capacity.plan import Parallelism
    from mme_local.capacity.profile import load_profile

    source = doubler_archive(tmp_path, "fat.tar.gz", hold_bytes=100 << 20)
    folder = tmp_path / "fat-copies"
    folder.mkdir()
    for i in range(COPIES):
        shutil.copy(source, folder / f"model-{i}.tar.gz")
    profile_path = tmp_path / "profile.json"
    (tmp_path / "request.json").write_bytes(kserve_body([1.0, 2.0]))
    command = [str(Path(sys.executable).with_name("mme-local")), "capacity", "profile"]
    arguments = [str(folder), "--sample", str(tmp_path / "request.json"), "--repeats", "3"]
    done = subprocess.run(
        [*command, *arguments, "--out", str(profile_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    profile = load_profile(profile_path)
    # room for two models and a half: half a model (50 MiB) of slack either way
    budget = profile.baseline_host_bytes + int(2.5 * profile.artifacts[0].host_memory_bytes)
    trace = tmp_path / "trace.jsonl"
    settings = _recording(folder, tmp_path, trace, memory_limit_bytes=budget)
    settings = settings.model_copy(update={"max_parallel_downloads": 2, "max_parallel_loads": 2})
    sequences = [zipf_sequence(COPIES, 4, 0.8, seed=100 + k).tolist() for k in range(CLIENTS)]
    with RunningEmulator(settings) as running:
        clients = [
            threading.Thread(target=_send, args=(running, s, 0.1, 0.25 * k))
            for k, s in enumerate(sequences)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        running.settle()
        hits = running.metrics()["mme_model_cache_hit_total"]
        entries = running.emulator.cache.entries()
        measured = {
            "hits": int(hits),
            "loads": sum(e.loads for e in entries),
            "unloads": sum(e.unloads for e in entries),
            "downloads": sum(e.downloads for e in entries),
        }
    records = read_trace(trace)
    assert len(records) == CLIENTS * 4
    cold = [r for r in records if r.cache_hit is False]
    # each cold start knows its own load (a request that joined a load in flight waited less)
    assert cold and all(r.load_s is not None and r.load_s > 0 for r in cold)
    calls = read_control_calls(trace)
    unloads = [c for c in calls if isinstance(c, UnloadRecord)]
    assert len(unloads) == measured["unloads"] and all(u.unload_s > 0 for u in unloads)
    assert len(calls) - len(unloads) == measured["loads"]
    plan = make_plan(
        PlanRequest(
            profile=profile_path,
            trace=trace,
            budgets=EmulatorBudgets(memory_limit_bytes=budget),
            parallel=Parallelism(2, 2),
        )
    )
    result = plan.outcomes[0].result
    predicted = {
        "hits": result.hits,
        "loads": result.loads,
        "unloads": result.unloads,
        "downloads": result.downloads,
    }
    assert measured["unloads"] > 0
    for name, value in measured.items():
        assert abs(predicted[name] - value) <= 0.02 * value, (name, predicted, measured)
