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
import functools
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402

T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--round", type=int, default=200, help="examples per Hypothesis round")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    parser.add_argument(
        "--worst-cases",
        type=int,
        default=10_000,
        help="members in each timed hostile archive (0: none)",
    )
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
    if args.worst_cases:
        table += "\n\n" + _worst_cases(args.worst_cases)
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


def _worst_cases(count: int) -> str:
    """Times `lint` and extraction on hostile archives: the review's, and the costliest shapes
    the caps allow, `count` members each (time should grow with the archive, not faster)."""
    import io
    import tarfile
    import tempfile

    from mme_local.artifacts.lint import check_members

    def build(members: list[tuple[str, bytes, str]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
            for name, kind, target in members:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, target
                tar.addfile(info)
        return buffer.getvalue()

    deep = "/".join(["d" * 30] * 31)[:960]
    far = "../" + "/".join(["d" * 28] * 32)
    model = [("m/1/model.pt", tarfile.REGTYPE, "")]
    cases = {
        "the review's: 200 members at depth 2,000": build(
            [(f"m/{'d/' * 2000}{i}", tarfile.REGTYPE, "") for i in range(200)]
        ),
        "the review's: one link with an 80 KB target": build(
            [*model, ("m/1/x", tarfile.SYMTYPE, "a/" * 40_000)]
        ),
        "the review's: 36,000 folders, 1,000-byte cap": build(
            [(f"m/{i}/", tarfile.DIRTYPE, "") for i in range(36_000)]
        ),
        f"{count:,} files 32 levels deep, 1,000-byte paths": build(
            [(f"{deep}/{i}", tarfile.REGTYPE, "") for i in range(count)]
        ),
        f"{count:,} links with 32-name targets": build(
            [*model, *[(f"m/1/l{i}", tarfile.SYMTYPE, far) for i in range(count)]]
        ),
        f"{count:,} links to one file": build(
            [*model, *[(f"m/1/l{i}", tarfile.SYMTYPE, "model.pt") for i in range(count)]]
        ),
    }
    rows = [
        "| hostile archive | gzip bytes | lint: wall (CPU) | extraction: wall (CPU) | verdict |",
        "|---|---|---|---|---|",
    ]
    for label, data in cases.items():
        limit = 1000 if "1,000-byte cap" in label else 1 << 30
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "a.tar.gz"
            path.write_bytes(data)
            lint_s, _ = _timed(functools.partial(check_members, path, limit))
            destination = Path(scratch) / "model"
            extract_s, verdict = _timed(
                functools.partial(_extraction_verdict, data, destination, limit)
            )
        rows.append(f"| {label} | {len(data):,} | {lint_s} | {extract_s} | {verdict} |")
    return "\n".join(rows)


def _extraction_verdict(data: bytes, destination: Path, limit: int) -> str:
    import io

    from mme_local.artifacts.rules import ArchiveRejected
    from mme_local.cache.extract import extract_stream

    try:
        extract_stream(io.BytesIO(data), destination, limit)
    except ArchiveRejected as error:
        return "refused: " + _reason(error.message)
    return "accepted"


def _timed(call: Callable[[], T]) -> tuple[str, T]:
    """Wall and CPU seconds of `call`: on a shared machine the CPU time is the steadier one."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return f"{time.perf_counter() - wall:.2f} s ({time.process_time() - cpu:.2f} s)", result


def _reason(message: str) -> str:
    """The refusal without the member-specific details: its first clause."""
    head = message.split(":", 1)[0].split(" (", 1)[0]
    return re.sub(r"'[^']*'", "'...'", head)


if __name__ == "__main__":
    main()
