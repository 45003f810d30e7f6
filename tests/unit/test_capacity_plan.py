"""The plan: candidates priced and checked against targets, rendered, plotted, and the CLI."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mme_local.capacity.plan import (
    Parallelism,
    Targets,
    emulator_candidate,
    instance_candidates,
    run_plan,
)
from mme_local.capacity.prices import load_prices
from mme_local.capacity.report import render_json, render_markdown, render_table
from mme_local.capacity.workload import SyntheticSpec, synthetic
from mme_local.cli.app import app
from mme_local.cli.errors import run_app
from tests.unit.capacity_support import footprint, profile

TYPES = ["ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g5.2xlarge"]


def _plan(targets: Targets, models: int = 40):  # type: ignore[no-untyped-def]
    # 2 GiB per model on the GPU: a T4 holds 7, an A10G 11, of 40 Zipf-popular models
    prof = profile(footprint(host_mib=1500, gpu_mib=2048, load_s=3.0))
    workload = synthetic(SyntheticSpec(models, 20_000, 1.2, 2.0, seed=2), prof)
    candidates = instance_candidates(TYPES, [1, 2], prof, Parallelism(), 60.0)
    return run_plan(workload, prof, candidates, targets, load_prices())


def test_more_memory_means_more_hits_and_the_cheapest_fitting_is_chosen() -> None:
    plan = _plan(Targets(hit_ratio=0.7))
    by_label = {o.candidate.label: o for o in plan.outcomes}
    assert (
        by_label["ml.g5.xlarge x1"].result.hit_ratio
        > by_label["ml.g4dn.xlarge x1"].result.hit_ratio
    )
    assert (
        by_label["ml.g4dn.xlarge x2"].result.hit_ratio
        > by_label["ml.g4dn.xlarge x1"].result.hit_ratio
    )
    fitting = [o for o in plan.outcomes if o.meets]
    assert plan.cheapest is not None
    assert plan.cheapest.price_per_hour == min(o.price_per_hour or 0 for o in fitting)
    assert by_label["ml.g5.xlarge x2"].price_per_hour == pytest.approx(2 * 1.408)


def test_no_candidate_meeting_the_targets_is_said() -> None:
    plan = _plan(Targets(hit_ratio=1.01))
    assert plan.cheapest is None
    assert "No priced candidate meets the targets." in render_table(plan)


def test_renderings_carry_every_candidate_and_the_assumptions() -> None:
    plan = _plan(Targets(p99_s=5.0))
    table, markdown = render_table(plan), render_markdown(plan)
    for outcome in plan.outcomes:
        assert outcome.candidate.label in table and outcome.candidate.label in markdown
    assert "Assumed:" in table and "us-east-1" in table
    assert markdown.startswith("| candidate | warm-up s | hit ratio |")
    data = json.loads(render_json(plan))
    assert len(data["candidates"]) == 6
    assert data["prices"]["region"] == "us-east-1"


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    from mme_local.capacity.plot import write_plot

    write_plot(_plan(Targets(hit_ratio=0.8), models=100), tmp_path / "plan.png")
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_emulator_budgets_use_raw_footprints() -> None:
    prof = profile(footprint(host_mib=500, platform="pytorch_libtorch"), stub_mib=400)
    candidate = emulator_candidate(prof, 2, None, None, 60.0)
    assert not candidate.cloud_footprints
    assert candidate.config.recorded_cold_starts
    assert candidate.config.budgets.max_loaded_models == 2


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["mme-local", "capacity", "plan", *args])
    with pytest.raises(SystemExit) as exited:
        run_app(app)
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_cli_bad_input_gets_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    profile().save(path)
    synthetic_flags = ("--models", "3", "--requests", "10")
    line = _cli(
        monkeypatch, capsys, "--profile", str(path), *synthetic_flags, "--instances", "ml.x"
    )
    assert line.startswith("error: --instances ml.x")
    (tmp_path / "t.jsonl").write_text("")
    line = _cli(monkeypatch, capsys, "--profile", str(path), "--trace", str(tmp_path / "t.jsonl"))
    assert "is empty" in line
    line = _cli(monkeypatch, capsys, "--profile", str(tmp_path / "none.json"), *synthetic_flags)
    assert "does not exist" in line
    line = _cli(monkeypatch, capsys, "--profile", str(path), *synthetic_flags)
    assert "--instances" in line


def test_cli_prints_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    profile().save(path)
    args = ["--profile", str(path), "--models", "20", "--requests", "500", "--format", "json"]
    monkeypatch.setattr(
        sys, "argv", ["mme-local", "capacity", "plan", *args, "--instances", "ml.g5.xlarge"]
    )
    run_app(app)
    data = json.loads(capsys.readouterr().out)
    assert data["candidates"][0]["label"] == "ml.g5.xlarge x1"


def test_replayed_loads_take_turns_in_one_lane_as_the_emulator_sends_them() -> None:
    """Two cold models at once with two load slots: the second load starts when the first
    ends (Triton runs them one at a time), unless the replay is told they run together."""
    from mme_local.capacity.simulator import model_costs, simulate
    from tests.unit.capacity_support import sequential

    prof = profile(footprint(["model-0.tar.gz", "model-1.tar.gz"], load_s=1.0, download_s=0.5))
    workload = replace(sequential([0, 1]), times=[0.0, 0.0])
    costs = model_costs(workload, prof, False)
    waits = {}
    for serial in (True, False):
        candidate = emulator_candidate(
            prof, None, None, None, 60.0, parallel=Parallelism(2, 2), serial_model_control=serial
        )
        result = simulate(workload, costs, candidate.config)
        waits[serial] = (result.wait_p50_s, result.loads)
    assert waits[False] == (1.5, 2)
    assert waits[True][1] == 2 and waits[True][0] == pytest.approx(2.0)  # median of 1.5, 2.5
