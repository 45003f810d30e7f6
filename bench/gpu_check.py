"""The GPU proof in one command: KIND_GPU TorchScript, NVML memory, GPU-budget eviction, 507.

On an offline GPU host with Python 3.12 and torch (CUDA build), from a copy of the repository
with the parts of `make gpu-bundle` in `gpu-bundle/`:

    python3.12 bench/gpu_check.py                  # stages the bundle, measures, writes results
    .venv/bin/python bench/gpu_check.py --dry-run  # here, on CPU: every step but the GPU ones

The bundle goes into a temporary venv made with --system-site-packages (torch comes from the
host, numpy < 2 from the bundle shadows the host's numpy 2 there only), and the check re-runs
itself in it with the bundle's Triton. Results go to `out/gpu-check.md` (a section for
docs/benchmarks.md) and `out/gpu-check.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gpu_bundle import BundleError, stage  # noqa: E402

STAGED_ENV = "MME_LOCAL_GPU_CHECK_STAGED"
GiB = 1024**3


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only: skip the GPU steps")
    parser.add_argument("--bundle", type=Path, default=None, help="default: ./gpu-bundle if any")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--targets", type=int, default=None, help="workload size (GPU: 200)")
    parser.add_argument("--calls", type=int, default=3, help="calls per workload target")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--gpu-budget-gib", type=float, default=8.0)
    parser.add_argument("--warm-calls", type=int, default=None)
    parser.add_argument("--time-budget-s", type=float, default=450.0)
    return parser.parse_args(argv)


def stage_and_rerun(bundle: Path, argv: list[str]) -> int:
    """Install the bundle into a temporary venv over the host's packages; run there."""
    scratch = Path(tempfile.mkdtemp(prefix="mme-gpu-check-"))
    started = time.perf_counter()
    print(f"[stage] unpacking {bundle} into {scratch}", flush=True)
    staged = stage(bundle, scratch)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if staged.python != here:
        raise BundleError(f"the bundle is for Python {staged.python}; run this with python{here}")
    venv = scratch / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    pip_wheel = next(w for w in staged.wheels if w.name.startswith("pip-"))
    others = [str(w) for w in staged.wheels if w != pip_wheel]
    print(f"[stage] installing {len(others)} wheels into {venv}", flush=True)
    subprocess.run(
        [str(venv / "bin" / "python"), f"{pip_wheel}/pip", "install", "--quiet", "--no-index",
         "--no-deps", "--disable-pip-version-check", *others],
        check=True,
    )  # fmt: skip
    print(f"[stage] done in {time.perf_counter() - started:.1f} s", flush=True)
    env = os.environ | {
        STAGED_ENV: f"{bundle} staged in {time.perf_counter() - started:.1f} s",
        "MME_LOCAL_TRITON_HOME": str(staged.triton_home),
    }
    command = [str(venv / "bin" / "python"), str(Path(__file__).resolve()), *argv]
    return subprocess.run(command, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    bundle = args.bundle or (ROOT / "gpu-bundle" if (ROOT / "gpu-bundle").is_dir() else None)
    if bundle is not None and STAGED_ENV not in os.environ and not args.dry_run:
        try:
            return stage_and_rerun(bundle, argv)
        except BundleError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    from bench.gpu_run import run_all

    staging = os.environ.get(STAGED_ENV, "skipped: no bundle staged; this environment serves")
    started = time.perf_counter()
    steps, facts = run_all(args, deadline=time.monotonic() + args.time_budget_s)
    facts["staging"] = staging
    facts["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(args.out, steps, facts, argv)
    return 1 if any(step.status == "failed" for step in steps) else 0


def render(steps: Sequence[object], facts: dict[str, object], argv: list[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"## GPU check on {facts['gpu']} ({stamp})",
        "",
        f"- Machine: {machine}; torch {facts['torch']}",
        f"- Command: `python bench/gpu_check.py {' '.join(argv)}`".replace("  ", " "),
        f"- Bundle: {facts['staging']}; whole check {facts['wall_s']} s",
        "",
        "| step | result |",
        "|---|---|",
    ]
    for step in steps:
        data = asdict(step)  # type: ignore[call-overload]
        if data["status"] == "skipped":
            result = f"skipped: {data['reason']}"
        else:
            result = ", ".join(f"{k} {v}" for k, v in data["values"].items())
            if data["status"] == "failed":
                result = f"**failed**: {data['reason']} {result}"
        lines.append(f"| {data['name']} | {result} |")
    notes = [f"- {data['name']}: {note}" for data in map(asdict, steps) for note in data["notes"]]  # type: ignore[arg-type]
    return "\n".join([*lines, "", *notes, ""])


def write_results(
    out: Path, steps: Sequence[object], facts: dict[str, object], argv: list[str]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    markdown = render(steps, facts, argv)
    (out / "gpu-check.md").write_text(markdown)
    record = {"facts": facts, "steps": [asdict(s) for s in steps]}  # type: ignore[call-overload]
    (out / "gpu-check.json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown)
    print(f"results: {out / 'gpu-check.md'} (append it to docs/benchmarks.md)")


if __name__ == "__main__":
    sys.exit(main())
