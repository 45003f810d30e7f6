"""What `capacity profile` and `capacity plan` print beside the planner's own rendering.

Only reads the profile and plan structures: the per-artifact figures a profile measured, and
for a plan, whether targets were given and which target each candidate misses.
"""

from __future__ import annotations

from mme_local.capacity.plan import Outcome, Plan
from mme_local.capacity.profile import Profile
from mme_local.capacity.report import verdict

# The planner's verdict lines (capacity/report.py), replaced when they would mislead.
_VERDICT_PREFIXES = ("Cheapest that meets the targets", "No priced candidate meets the targets")


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def profile_lines(profile: Profile) -> list[str]:
    """One row per distinct artifact: what it costs to hold and to bring in."""
    header = (
        "artifact",
        "models",
        "platform",
        "archive MiB",
        "extracted MiB",
        "host MiB",
        "GPU MiB",
        "download ms",
        "load ms",
        "unload ms",
        "warm ms",
    )
    rows = [list(header)]
    for footprint in profile.artifacts:
        names = footprint.target_models
        first = names[0] if names else footprint.sha256[:12]
        rows.append(
            [
                first,
                str(len(names)),
                footprint.platform,
                _mib(footprint.archive_bytes),
                _mib(footprint.extracted_bytes),
                _mib(footprint.host_memory_bytes),
                _mib(footprint.gpu_memory_bytes),
                _ms(footprint.download_s),
                _ms(footprint.load_s),
                _ms(footprint.unload_s),
                _ms(footprint.warm_latency_s),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 3 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def misses(plan: Plan, outcome: Outcome) -> list[str]:
    """The targets this candidate misses, each with its figure and the target."""
    return plan.targets.missed(outcome.result)


def verdict_lines(plan: Plan) -> list[str]:
    """What to say in place of the planner's one-line verdict."""
    targets = plan.targets
    lines = []
    if targets.hit_ratio is None and targets.p99_s is None:
        lines.append(
            "No hit-ratio or p99 target was given (--target-hit-ratio, --target-p99): a "
            f"candidate meets if at most {targets.max_failed_share:.2%} of requests are "
            "answered 429 or with an error (--max-failed-share)."
        )
    best = plan.cheapest
    if best is not None:
        lines.append(f"Cheapest that meets the targets: {verdict(best)}.")
    else:
        lines.append("No priced candidate meets the targets:")
    for outcome in plan.outcomes:
        missed = misses(plan, outcome)
        label = outcome.candidate.label
        if missed and best is None:
            lines.append(f"  {label}: misses {'; '.join(missed)}")
        elif not missed and outcome.price_per_hour is None and best is None:
            lines.append(f"  {label}: meets the targets but has no price (add it with --prices)")
    return lines


def with_verdict(rendered: str, plan: Plan) -> str:
    """The planner's table or Markdown with its verdict line replaced by `verdict_lines`."""
    lines = rendered.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith(_VERDICT_PREFIXES)), None)
    if at is None:
        lines += verdict_lines(plan)
    else:
        lines[at : at + 1] = verdict_lines(plan)
    return "\n".join(lines) + "\n"
