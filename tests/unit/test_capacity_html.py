"""`capacity plan --html`: the chosen candidate's replayed timeline and the page around it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mme_local.capacity.html_report import chosen_outcome, replay_timeline, report_data, write_html
from mme_local.capacity.plan import Parallelism, Targets, instance_candidates, run_plan
from mme_local.capacity.prices import load_prices
from mme_local.capacity.simulator import model_costs
from mme_local.capacity.workload import SyntheticSpec, synthetic
from mme_local.cli.app import app
from mme_local.cli.errors import run_app
from tests.unit.capacity_support import footprint, profile

TYPES = ["ml.g4dn.xlarge", "ml.g5.xlarge"]


@settings(max_examples=25, deadline=None)
@given(
    models=st.integers(1, 30),
    requests=st.integers(1, 400),
    zipf=st.one_of(st.none(), st.floats(0.5, 2.0)),
    rate=st.floats(0.5, 50.0),
    seed=st.integers(0, 5),
)
def test_replayed_timeline_adds_up_to_the_plan(
    models: int, requests: int, zipf: float | None, rate: float, seed: int
) -> None:
    prof = profile(footprint(host_mib=1500, gpu_mib=2048, load_s=3.0))
    workload = synthetic(SyntheticSpec(models, requests, zipf, rate, seed=seed), prof)
    candidates = instance_candidates(TYPES, [1, 2], prof, Parallelism(), 60.0)
    plan = run_plan(workload, prof, candidates, Targets(), None)
    for outcome in plan.outcomes:
        costs = model_costs(workload, prof, outcome.candidate.cloud_footprints)
        timeline = replay_timeline(workload, costs, outcome)
        samples = timeline["samples"]
        result = outcome.result
        assert sum(s["hit"] for s in samples) == result.hits
        assert sum(s["not_ready"] for s in samples) == result.not_ready
        assert sum(s["hit"] + s["cold"] + s["not_ready"] for s in samples) == result.requests
        assert (timeline["loads"], timeline["unloads"]) == (result.loads, result.unloads)
        # Memory counts from each load call on, as the simulator's budget checks count it.
        assert min(s["host"] for s in samples) >= outcome.candidate.config.base_host_bytes
        assert len(samples) <= 300


def _plan():  # type: ignore[no-untyped-def]
    prof = profile(footprint(host_mib=1500, gpu_mib=2048, load_s=3.0))
    workload = synthetic(SyntheticSpec(40, 20_000, 1.2, 2.0, seed=2), prof)
    candidates = instance_candidates([*TYPES, "ml.g5.2xlarge"], [1, 2], prof, Parallelism(), 60.0)
    return (
        run_plan(workload, prof, candidates, Targets(hit_ratio=0.7), load_prices()),
        workload,
        prof,
    )


def test_the_cheapest_fitting_candidate_is_the_one_drawn() -> None:
    plan, workload, prof = _plan()
    data = report_data(plan, workload, prof)
    assert plan.cheapest is not None
    assert data["chosen"]["label"] == plan.cheapest.candidate.label
    assert data["chosen"]["why"] == "cheapest that meets the targets"
    assert [c["label"] for c in data["candidates"]] == [o.candidate.label for o in plan.outcomes]
    names = [b["name"] for b in data["chosen"]["budgets"]]
    assert names == [
        "loaded models (peak)",
        "host memory (peak)",
        "GPU memory (peak)",
        "disk (peak)",
    ]


def test_without_a_fitting_priced_candidate_the_best_hit_ratio_is_shown() -> None:
    prof = profile(footprint(host_mib=1500, gpu_mib=2048, load_s=3.0))
    workload = synthetic(SyntheticSpec(40, 2000, 1.2, 2.0, seed=2), prof)
    candidates = instance_candidates(TYPES, [1], prof, Parallelism(), 60.0)
    plan = run_plan(workload, prof, candidates, Targets(hit_ratio=1.01), load_prices())
    assert plan.cheapest is None
    best = max(plan.outcomes, key=lambda o: o.result.hit_ratio)
    assert chosen_outcome(plan) is best
    data = report_data(plan, workload, prof)
    assert data["chosen"]["label"] == best.candidate.label
    assert data["chosen"]["why"].startswith("no priced candidate meets the targets")


def test_page_is_self_contained_with_the_plan_inside(tmp_path: Path) -> None:
    plan, workload, prof = _plan()
    path = tmp_path / "report.html"
    write_html(plan, workload, prof, path)
    page = path.read_text()
    assert "/*DATA*/" not in page and "/*SCRIPT*/" not in page and "/*STYLE*/" not in page
    assert "<link" not in page and " src=" not in page
    embedded = re.search(r'<script type="application/json" id="plan">(.*?)</script>', page, re.S)
    assert embedded is not None
    data = json.loads(embedded.group(1).replace("<\\/", "</"))
    assert data["chosen"]["timeline"]["samples"]


def test_cli_writes_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof_path = tmp_path / "p.json"
    profile().save(prof_path)
    html = tmp_path / "plan.html"
    args = ["--profile", str(prof_path), "--models", "20", "--requests", "500"]
    args += ["--instances", "ml.g5.xlarge", "--html", str(html)]
    monkeypatch.setattr(sys, "argv", ["mme-local", "capacity", "plan", *args])
    run_app(app)
    assert f"wrote {html}" in capsys.readouterr().err
    assert "ml.g5.xlarge x1" in html.read_text()
