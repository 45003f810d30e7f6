"""Fingerprints of the capacity simulator's results, to prove a speed change alters nothing.

Runs the three cases of `bench/capacity_sim.py` on a reduced size, plus cases that take the
paths those three don't (a count budget, a small disk budget that deletes and reclaims, one
download and load slot, the model cache disabled, several instances routed, a recorded run's
cold starts, Triton 25.12's unload stall), and prints one digest per case over every
request's wait and answer, the `SimResult`, the cache machines' counters and every model's
final state. Save the digests before a change and compare after:

    python bench/capacity_sim_check.py --save /tmp/before.json
    python bench/capacity_sim_check.py --compare /tmp/before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from unittest.mock import patch

import numpy as np

import mme_local.capacity.simulator as simulator
from bench.capacity_sim import minilm_like_profile
from mme_local.capacity.instance import Instance
from mme_local.capacity.plan import Candidate, Parallelism, emulator_candidate, instance_candidates
from mme_local.capacity.profile import Profile
from mme_local.capacity.simulator import model_costs, simulate
from mme_local.capacity.workload import SyntheticSpec, Workload, synthetic

MiB = 1024**2


@dataclass(frozen=True)
class CheckCase:
    name: str
    spec: SyntheticSpec
    candidate: Callable[[Profile], Candidate]
    recorded: bool = False
    """Give the workload recorded service times and cold-start waits."""


def _instance(name: str, count: int = 1, **options: Any) -> Callable[[Profile], Candidate]:
    def make(profile: Profile) -> Candidate:
        rest = dict(options)
        parallel = rest.pop("parallel", Parallelism())
        disk = rest.pop("disk_bytes", None)
        (candidate,) = instance_candidates([name], [count], profile, parallel, 60.0, **rest)
        if disk is not None:
            budgets = replace(candidate.config.budgets, disk_bytes=disk)
            candidate = replace(candidate, config=replace(candidate.config, budgets=budgets))
        return candidate

    return make


def _emulator(**options: Any) -> Callable[[Profile], Candidate]:
    return lambda profile: emulator_candidate(profile, ready_timeout_s=60.0, **options)


CASES = [
    # The benchmark's cases over as many models (the disk fills up), with fewer requests.
    CheckCase(
        "overloaded", SyntheticSpec(10_000, 200_000, 1.0, 200.0, 1), _instance("ml.g4dn.xlarge")
    ),
    CheckCase("skewed", SyntheticSpec(10_000, 200_000, 1.4, 20.0, 1), _instance("ml.g5.2xlarge")),
    CheckCase(
        "load-heavy", SyntheticSpec(10_000, 100_000, 1.0, 3.0, 1), _instance("ml.g5.2xlarge")
    ),
    CheckCase(
        "small disk, one slot each",
        SyntheticSpec(300, 30_000, 1.0, 5.0, 2),
        _instance("ml.g5.xlarge", disk_bytes=2_000 * MiB, parallel=Parallelism(1, 1)),
    ),
    CheckCase(
        "cache disabled",
        SyntheticSpec(200, 20_000, 1.2, 10.0, 3),
        _instance("ml.g5.xlarge", cache_enabled=False),
    ),
    CheckCase(
        "three instances, 25.12",
        SyntheticSpec(500, 40_000, 1.1, 40.0, 4),
        _instance("ml.g5.xlarge", count=3, triton_version="25.12"),
    ),
    CheckCase(
        "emulator budgets, recorded cold starts",
        SyntheticSpec(100, 20_000, 1.0, 8.0, 5),
        _emulator(max_loaded_models=6, memory_limit_bytes=3_000 * MiB, disk_limit_bytes=900 * MiB),
        recorded=True,
    ),
    CheckCase(
        "emulator, memory only",
        SyntheticSpec(100, 20_000, 0.8, 30.0, 6),
        _emulator(max_loaded_models=None, memory_limit_bytes=2_500 * MiB, disk_limit_bytes=None),
    ),
]


def _recorded(workload: Workload, seed: int) -> Workload:
    """The same arrivals with a recorded run's columns: service times and each cold start's
    own download and load."""
    rng = np.random.default_rng(seed)
    n = len(workload)
    service = rng.exponential(0.02, n).tolist()
    is_cold = (rng.random(n) < 0.3).tolist()
    downloads = rng.uniform(0.0, 1.0, n).tolist()
    loads = rng.uniform(0.5, 5.0, n).tolist()
    cold: list[tuple[float, float] | None] = [
        (d, load) if c else None for c, d, load in zip(is_cold, downloads, loads, strict=True)
    ]
    return replace(workload, service_s=service, cold_work_s=cold)


def fingerprint(case: CheckCase, profile: Profile) -> tuple[str, dict[str, Any], float]:
    """The case's digest, its headline figures, and the seconds `simulate` took."""
    workload = synthetic(case.spec, profile)
    if case.recorded:
        workload = _recorded(workload, case.spec.seed)
    candidate = case.candidate(profile)
    costs = model_costs(workload, profile, candidate.cloud_footprints)
    answers: list[tuple[int, float | None, int]] = []
    made: list[Instance] = []

    class Recording(Instance):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            inner = self.answer

            def answer(index: int, wait: float | None, how: int) -> None:
                answers.append((index, wait, how))
                inner(index, wait, how)

            self.answer = answer
            made.append(self)

    with patch.object(simulator, "Instance", Recording):
        started = time.process_time()
        result = simulate(workload, costs, candidate.config)
        took = time.process_time() - started
    digest = hashlib.sha256()
    digest.update(repr(answers).encode())
    digest.update(repr(result).encode())
    for inst in made:
        m = inst.machine
        digest.update(
            repr(
                (
                    m.hits,
                    m.loads,
                    m.unloads,
                    m.downloads,
                    m.deletions,
                    m.forgotten,
                    m.over_budget_loads,
                    m.occupying,
                    m.disk_used,
                    m.disk_reserved,
                    m.host_held,
                    m.gpu_held,
                    inst.not_ready,
                    inst.errors,
                    inst.rejected_loads,
                    inst.peak_host,
                    inst.peak_gpu,
                    inst.first_eviction,
                    inst.load_times,
                    sorted(inst.busy_until.items()),
                )
            ).encode()
        )
        for name in sorted(m.models):
            e = m.models[name]
            digest.update(
                repr(
                    (
                        name,
                        e.state,
                        e.waiting,
                        e.pins,
                        e.waiters,
                        e.last_used,
                        e.disk_bytes,
                        e.memory_bytes,
                        e.gpu_bytes,
                        e.downloads,
                        e.loads,
                        e.unloads,
                        e.invocations,
                        e.loaded_at,
                        e.last_error,
                    )
                ).encode()
            )
    figures = {
        "requests": result.requests,
        "hits": result.hits,
        "429s": result.not_ready,
        "errors": result.errors,
        "loads": result.loads,
        "p99_ms": round(result.wait_p99_s * 1000, 3),
    }
    return digest.hexdigest(), figures, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--save", help="write the digests to this JSON file")
    group.add_argument("--compare", help="compare with digests saved by --save")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    profile = minilm_like_profile()
    digests: dict[str, str] = {}
    for case in CASES:
        digest, figures, took = fingerprint(case, profile)
        digests[case.name] = digest
        print(f"{case.name:40s} {digest[:16]}  {took:6.2f} s CPU  {figures}", flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(digests, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        differ = [name for name in digests if before.get(name) != digests[name]]
        if differ:
            print("DIFFERENT:", ", ".join(differ))
            sys.exit(1)
        print("identical: every case")


if __name__ == "__main__":
    main()
