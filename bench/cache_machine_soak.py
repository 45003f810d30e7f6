"""A longer campaign of the cache state machine's model-based test
(tests/unit/test_cache_machine_model.py): more examples and longer runs than `make test` uses.

Each example drives the machine with a random interleaving of requests, give-ups and work that
ends well, fails, answers 507 or times out, against a fake container and disk, checking every
invariant after every step and, at the end, that every request was answered exactly once and
no model is left in a transition.

    .venv/bin/python bench/cache_machine_soak.py [--examples 5000] [--steps 80] [--write]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from bench.results import append_result  # noqa: E402
from tests.unit.test_cache_machine_model import CacheMachineModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=80, help="events per example, at most")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # over-budget loads are logged; expected here
    started = time.perf_counter()
    verdict = "no invariant broken"
    try:
        run_state_machine_as_test(
            CacheMachineModel,
            settings=settings(
                max_examples=args.examples,
                stateful_step_count=args.steps,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except Exception as error:  # report the shrunk failure, then fail
        verdict = f"FAILED: {type(error).__name__}: {error}".splitlines()[0]
    elapsed = time.perf_counter() - started
    table = (
        "| examples | events per example (max) | seconds | result |\n"
        "|---:|---:|---:|---|\n"
        f"| {args.examples} | {args.steps} | {elapsed:.0f} | {verdict} |"
    )
    print(table)
    if args.write:
        append_result(
            "Cache state machine: model-based campaign",
            "Random interleavings of requests and work outcomes against a fake container and "
            "disk (tests/unit/test_cache_machine_model.py), invariants after every step.",
            table,
        )
    if verdict != "no invariant broken":
        sys.exit(1)


if __name__ == "__main__":
    main()
