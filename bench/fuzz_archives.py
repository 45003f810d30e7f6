"""Archive fuzzing: a longer campaign of the property test in tests/unit/test_archive_fuzz.py.

Generates tar archives (files, folders, symbolic and hard links, long and awkward names, deep
paths, pax records, duplicates, a well-formed model or not) in rounds of Hypothesis examples,
each round with its own seed, until the time is up. Each archive is linted and extracted; the
checks are those of tests/archive_fuzz.py (one verdict from both, accepted content inside the
model folder and within the caps, nothing outside, bounded memory). Reports how many archives
were tried, how they were judged, the slowest and the most memory-hungry, and any failure
(shrunk by Hypothesis to a smallest example, with the seed that reproduces it).

    .venv/bin/python bench/fuzz_archives.py [--minutes 2] [--round 200] [--seed 1] [--write]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--round", type=int, default=200, help="examples per Hypothesis round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from hypothesis import HealthCheck, Phase, given, seed, settings

    from tests.archive_fuzz import Archive, Outcome, archives, check

    verdicts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    slowest = Outcome(None, 0.0, 0)
    hungriest = Outcome(None, 0.0, 0)
    failures: list[str] = []
    tried = 0
    rounds = 0
    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    while time.monotonic() < deadline and not failures:
        round_seed = args.seed + rounds

        @seed(round_seed)
        @settings(
            max_examples=args.round,
            deadline=None,
            database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(archives())
        def one(archive: Archive) -> None:
            nonlocal tried, slowest, hungriest
            outcome = check(archive)
            tried += 1
            kinds.update(spec.kind for spec in archive.members)
            verdicts["accepted" if outcome.verdict is None else _reason(outcome.verdict[1])] += 1
            if outcome.seconds > slowest.seconds:
                slowest = outcome
            if outcome.peak_bytes > hungriest.peak_bytes:
                hungriest = outcome

        try:
            one()
        except Exception as error:  # a property failed: keep Hypothesis's shrunk example
            failures.append(f"seed {round_seed}: {type(error).__name__}: {error}")
        rounds += 1
    elapsed = time.monotonic() - started

    rows = [
        "| what | value |",
        "|---|---|",
        f"| archives tried | {tried} (in {rounds} rounds of up to {args.round}, seeds "
        f"{args.seed} to {args.seed + rounds - 1}, {elapsed:.0f} s) |",
        f"| members generated | {sum(kinds.values())}: "
        + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        + " |",
        f"| slowest archive (lint + extraction) | {slowest.seconds * 1000:.0f} ms |",
        f"| most memory (tracemalloc peak, lint + extraction) | "
        f"{hungriest.peak_bytes / 2**20:.1f} MiB |",
        f"| property failures | {len(failures)} |",
    ]
    rows += ["", "| verdict (both lint and extraction) | archives |", "|---|---|"]
    rows += [f"| {reason} | {count} |" for reason, count in verdicts.most_common()]
    table = "\n".join(rows)
    if failures:
        table += "\n\nFailures:\n\n" + "\n".join(f"- `{f.splitlines()[0]}`" for f in failures)
    print(table)
    for failure in failures:
        print(failure, file=sys.stderr)
    if args.write:
        append_result(
            "Archive fuzzing: lint and extraction on generated archives",
            "Each archive is linted and extracted; both must give the same verdict, accepted "
            "content must resolve inside the model folder with entries and bytes within the "
            "caps, nothing may be written outside, and peak memory must stay under 32 MiB "
            "(tests/archive_fuzz.py).",
            table,
        )
    sys.exit(1 if failures else 0)


def _reason(message: str) -> str:
    """The refusal without the member-specific details: its first clause."""
    head = message.split(":", 1)[0].split(" (", 1)[0]
    return re.sub(r"'[^']*'", "'...'", head)


if __name__ == "__main__":
    main()
