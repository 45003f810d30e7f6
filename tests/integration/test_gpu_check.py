"""The GPU check's CPU rehearsal and the real Triton subset's size, on the machine at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_bundle import PART_LIMIT_BYTES, triton_members, write_triton_archive
from mme_local.runtime import provision

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GPU_STEPS = (
    "GPU memory per model (from the torch host: NVML and its tensors)",
    "warm latency, GPU",
    "eviction under a GPU budget",
    "a load that exhausts GPU memory (507, evict, retry)",
)


def test_the_triton_subset_fits_one_transfer(tmp_path: Path) -> None:
    home = provision.ensure().home

    archive = write_triton_archive(home, tmp_path, "3.12")

    assert archive.stat().st_size <= PART_LIMIT_BYTES
    names = {str(p) for p in triton_members(home, "3.12")}
    assert "pytriton/tritonserver/bin/tritonserver" in names
    assert not any("python_backend_stubs/3.11" in name for name in names)


def test_the_dry_run_serves_on_cpu_and_reports_each_gpu_step_as_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((out / "gpu-check.json").read_text())
    steps = {step["name"]: step for step in record["steps"]}
    for name in GPU_STEPS:
        assert steps[name]["status"] == "skipped"
        assert steps[name]["reason"] == "--dry-run"
    cold = steps["cold load (first invocation: download, extract, load, infer)"]
    assert cold["status"] == "measured"
    assert cold["values"]["status"] == 200
    assert steps["warm latency, CPU"]["values"]["n"] == 15
    work = next(step for name, step in steps.items() if name.startswith("workload"))
    assert work["values"]["requests"] == 24
    assert work["values"]["errors"] == 0
    assert work["values"]["loads"] == 8
    assert work["values"]["evictions"] == 5
    assert work["values"]["loaded_after"] == 3
    assert work["values"]["stubs_after"] == 3
    assert record["facts"]["dry_run"] is True
    markdown = (out / "gpu-check.md").read_text()
    assert markdown.startswith("## GPU check on no GPU (--dry-run)")
    assert "| warm latency, GPU | skipped: --dry-run |" in markdown
