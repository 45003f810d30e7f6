"""A plan as a table for the terminal, as Markdown, or as JSON for scripts."""

from __future__ import annotations

import json
from typing import Any

from mme_local.capacity.plan import Outcome, Plan

COLUMNS = (
    "candidate",
    "hit ratio",
    "cold starts/h",
    "loads",
    "unloads",
    "downloads",
    "429s",
    "added p50 ms",
    "added p99 ms",
    "peak host MiB",
    "peak GPU MiB",
    "$/h",
    "meets",
)


def _cells(outcome: Outcome) -> list[str]:
    r = outcome.result
    return [
        outcome.candidate.label,
        f"{r.hit_ratio:.3f}",
        f"{r.per_hour(r.loads):,.0f}",
        f"{r.loads:,}",
        f"{r.unloads:,}",
        f"{r.downloads:,}",
        f"{r.not_ready:,}",
        f"{r.wait_p50_s * 1000:,.0f}",
        f"{r.wait_p99_s * 1000:,.0f}",
        f"{r.peak_host_bytes >> 20:,}",
        "-" if r.peak_gpu_bytes is None else f"{r.peak_gpu_bytes >> 20:,}",
        "-" if outcome.price_per_hour is None else f"{outcome.price_per_hour:.3f}",
        "yes" if outcome.meets else "no",
    ]


def _verdict(plan: Plan) -> str:
    best = plan.cheapest
    if best is None:
        return "No priced candidate meets the targets."
    return (
        f"Cheapest that meets the targets: {best.candidate.label} "
        f"(${best.price_per_hour:.3f}/h, hit ratio {best.result.hit_ratio:.3f}, "
        f"added p99 {best.result.wait_p99_s * 1000:,.0f} ms)."
    )


def _footer(plan: Plan) -> list[str]:
    lines = [_verdict(plan)]
    if plan.prices is not None:
        lines.append(f"Prices: {plan.prices.describe()}; override with --prices FILE.")
    lines.extend(f"Assumed: {note}." for note in plan.notes)
    return lines


def render_markdown(plan: Plan) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|"
    rows = ["| " + " | ".join(_cells(o)) + " |" for o in plan.outcomes]
    return "\n".join([head, rule, *rows, "", *_footer(plan)]) + "\n"


def render_table(plan: Plan) -> str:
    grid = [list(COLUMNS), *(_cells(o) for o in plan.outcomes)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(COLUMNS))]
    lines = []
    for number, row in enumerate(grid):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join([*lines, "", *_footer(plan)]) + "\n"


def plan_dict(plan: Plan) -> dict[str, Any]:
    best = plan.cheapest
    return {
        "targets": {"hit_ratio": plan.targets.hit_ratio, "p99_s": plan.targets.p99_s},
        "cheapest": None if best is None else best.candidate.label,
        "prices": None
        if plan.prices is None
        else {
            "source": plan.prices.source,
            "region": plan.prices.region,
            "as_of": plan.prices.as_of,
            "currency": plan.prices.currency,
        },
        "notes": plan.notes,
        "candidates": [
            {
                "label": o.candidate.label,
                "instance_type": o.candidate.instance_type,
                "count": o.candidate.config.count,
                "price_per_hour": o.price_per_hour,
                "meets": o.meets,
                "hit_ratio": o.result.hit_ratio,
                "cold_starts_per_hour": o.result.per_hour(o.result.loads),
                **{
                    k: getattr(o.result, k)
                    for k in (
                        "requests",
                        "hits",
                        "not_ready",
                        "loads",
                        "unloads",
                        "downloads",
                        "deletions",
                        "over_budget_loads",
                        "duration_s",
                        "wait_p50_s",
                        "wait_p99_s",
                        "peak_host_bytes",
                        "peak_gpu_bytes",
                    )
                },
            }
            for o in plan.outcomes
        ],
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_dict(plan), indent=2) + "\n"


RENDERERS = {"table": render_table, "markdown": render_markdown, "json": render_json}
