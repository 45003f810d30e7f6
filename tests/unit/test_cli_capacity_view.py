"""What `capacity profile` and `capacity plan` print for a reader: figures, targets, misses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mme_local.capacity.plan import Parallelism, Targets, instance_candidates, run_plan
from mme_local.capacity.prices import load_prices
from mme_local.capacity.report import render_table
from mme_local.capacity.workload import SyntheticSpec, synthetic
from mme_local.cli.app import app
from mme_local.cli.capacity_view import misses, profile_lines, with_verdict
from mme_local.cli.errors import run_app
from tests.unit.capacity_support import footprint, profile

TYPES = ["ml.g4dn.xlarge", "ml.g5.xlarge"]


def _plan(targets: Targets):  # type: ignore[no-untyped-def]
    prof = profile(footprint(host_mib=1500, gpu_mib=2048, load_s=3.0))
    workload = synthetic(SyntheticSpec(40, 5_000, 1.2, 2.0, seed=2), prof)
    candidates = instance_candidates(TYPES, [1], prof, Parallelism(), 60.0)
    return run_plan(workload, prof, candidates, targets, load_prices())


def test_a_plan_without_targets_still_limits_429s_and_errors() -> None:
    text = with_verdict(render_table(plan := _plan(Targets())), plan)
    assert "No hit-ratio or p99 target was given" in text
    assert "at most 0.10% of requests are answered 429 or with an error" in text
    for outcome in plan.outcomes:
        window = outcome.result.judged(False)
        assert outcome.meets == (window.failed_share <= 0.001)
    assert plan.cheapest is not None
    assert f"Cheapest that meets the targets: {plan.cheapest.candidate.label}" in text


def test_a_plan_no_candidate_meets_names_the_target_each_one_misses() -> None:
    plan = _plan(Targets(hit_ratio=1.01, p99_s=0.001, max_failed_share=1.0))
    text = with_verdict(render_table(plan), plan)
    assert "No priced candidate meets the targets:" in text
    for outcome in plan.outcomes:
        ratio = f"{outcome.result.judged(False).hit_ratio:.3f}"
        assert f"  {outcome.candidate.label}: misses hit ratio {ratio} < 1.01; added p99 " in text
        assert "ms > 1 ms" in text


def test_a_candidate_meeting_the_targets_misses_nothing() -> None:
    plan = _plan(Targets(hit_ratio=0.0, max_failed_share=1.0))
    assert all(misses(plan, outcome) == [] for outcome in plan.outcomes)
    text = with_verdict(render_table(plan), plan)
    assert "Cheapest that meets the targets: ml.g4dn.xlarge x1" in text


def test_profile_lines_show_each_artifacts_figures() -> None:
    prof = profile(footprint(["a.tar.gz", "b.tar.gz"], host_mib=300, load_s=1.25))
    lines = profile_lines(prof)
    assert lines[0].split() == [
        "artifact", "models", "platform", "archive", "MiB", "extracted", "MiB", "host", "MiB",
        "GPU", "MiB", "download", "ms", "load", "ms", "unload", "ms", "warm", "ms",
    ]  # fmt: skip
    assert lines[2].split() == [
        "a.tar.gz", "2", "python", "10.0", "20.0", "300.0", "-", "500", "1,250", "100", "10",
    ]  # fmt: skip


def test_cli_plan_without_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    profile().save(path)
    args = ["--profile", str(path), "--models", "5", "--requests", "100"]
    monkeypatch.setattr(
        sys, "argv", ["mme-local", "capacity", "plan", *args, "--instances", "ml.g5.xlarge"]
    )
    run_app(app)
    out = capsys.readouterr().out
    assert "No hit-ratio or p99 target was given" in out
