"""What `capacity profile` and `capacity plan` print beside the planner's own rendering.

Only reads the profile and plan structures: the per-artifact figures a profile measured, and
for a plan, whether targets were given and which target each candidate misses.
"""

from __future__ import annotations

from mme_local.capacity.plan import Outcome, Plan
from mme_local.capacity.profile import Profile

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
    targets, result = plan.targets, outcome.result
    found = []
    if targets.hit_ratio is not None and result.hit_ratio < targets.hit_ratio:
        found.append(f"hit ratio {result.hit_ratio:.3f} < {targets.hit_ratio:g}")
    if targets.p99_s is not None and result.wait_p99_s > targets.p99_s:
        found.append(
            f"added p99 {result.wait_p99_s * 1000:,.0f} ms > {targets.p99_s * 1000:,.0f} ms"
        )
    return found


def verdict_lines(plan: Plan) -> list[str]:
    """What to say in place of the planner's one-line verdict."""
    no_targets = plan.targets.hit_ratio is None and plan.targets.p99_s is None
    priced = [o for o in plan.outcomes if o.price_per_hour is not None]
    if no_targets:
        lines = ["No targets were given (--target-hit-ratio, --target-p99)."]
        if priced:
            cheapest = min(priced, key=lambda o: o.price_per_hour or 0.0)
            lines.append(
                f"Cheapest candidate: {cheapest.candidate.label} "
                f"(${cheapest.price_per_hour:.3f}/h, hit ratio {cheapest.result.hit_ratio:.3f}, "
                f"added p99 {cheapest.result.wait_p99_s * 1000:,.0f} ms)."
            )
        return lines
    best = plan.cheapest
    if best is not None:
        lines = [
            f"Cheapest that meets the targets: {best.candidate.label} "
            f"(${best.price_per_hour:.3f}/h, hit ratio {best.result.hit_ratio:.3f}, "
            f"added p99 {best.result.wait_p99_s * 1000:,.0f} ms)."
        ]
    else:
        lines = ["No priced candidate meets the targets:"]
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
