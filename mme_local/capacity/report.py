"""A plan as a table for the terminal, as Markdown, or as JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mme_local.capacity.plan import Outcome, Plan
from mme_local.capacity.simulator import Window

COLUMNS = (
    "candidate",
    "warm-up s",
    "hit ratio",
    "cold starts/h",
    "loads",
    "unloads",
    "downloads",
    "429s",
    "507s",
    "errors",
    "added p50 ms",
    "added p99 ms",
    "peak host MiB",
    "peak GPU MiB",
    "$/h",
    "meets",
)
UNVERIFIED = "*"
"""Marks a price written from memory, not checked (until a --prices file replaces it)."""


def price_text(outcome: Outcome) -> str:
    """The hourly price, marked when unverified."""
    if outcome.price_per_hour is None:
        return "-"
    mark = "" if outcome.price_verified else UNVERIFIED
    return f"{outcome.price_per_hour:.3f}{mark}"


def _cells(outcome: Outcome, include_warmup: bool) -> list[str]:
    r = outcome.result
    w = r.judged(include_warmup)
    return [
        outcome.candidate.label,
        "never" if r.warmup_s is None else f"{r.warmup_s:,.0f}",
        f"{w.hit_ratio:.3f}",
        f"{w.loads_per_hour:,.0f}",
        f"{r.loads:,}",
        f"{r.unloads:,}",
        f"{r.downloads:,}",
        f"{w.not_ready:,}",
        f"{r.rejected_loads:,}",
        f"{w.errors:,}",
        f"{w.wait_p50_s * 1000:,.0f}",
        f"{w.wait_p99_s * 1000:,.0f}",
        f"{r.peak_host_bytes >> 20:,}",
        "-" if r.peak_gpu_bytes is None else f"{r.peak_gpu_bytes >> 20:,}",
        price_text(outcome),
        "yes" if outcome.meets else "no",
    ]


def verdict(outcome: Outcome) -> str:
    """'label ($1.234/h, hit ratio ..., added p99 ...)', the price marked if unverified."""
    window = outcome.result.judged(False)
    price = "no price" if outcome.price_per_hour is None else f"${outcome.price_per_hour:.3f}/h"
    if outcome.price_per_hour is not None and not outcome.price_verified:
        price += ", unverified price"
    return (
        f"{outcome.candidate.label} ({price}, hit ratio {window.hit_ratio:.3f}, "
        f"added p99 {window.wait_p99_s * 1000:,.0f} ms)"
    )


def _verdict(plan: Plan) -> str:
    best = plan.cheapest
    if best is None:
        return "No priced candidate meets the targets."
    return f"Cheapest that meets the targets: {verdict(best)}."


def _footer(plan: Plan) -> list[str]:
    lines = [_verdict(plan)]
    window = "whole run" if plan.targets.include_warmup else "steady state (after warm-up)"
    lines.append(
        f"Hit ratio, cold starts/h, 429s, errors and added latency: {window}; loads, unloads, "
        "downloads and 507s: whole run."
    )
    if plan.prices is not None:
        lines.append(f"Prices: {plan.prices.describe()}; override with --prices FILE.")
        if any(o.price_per_hour is not None and not o.price_verified for o in plan.outcomes):
            lines.append(
                f"{UNVERIFIED} unverified: written from memory, not checked against AWS's "
                "pricing page; give your own with --prices FILE."
            )
    lines.extend(f"Assumed: {note}." for note in plan.notes)
    return lines


def render_markdown(plan: Plan) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|"
    rows = ["| " + " | ".join(_cells(o, plan.targets.include_warmup)) + " |" for o in plan.outcomes]
    return "\n".join([head, rule, *rows, "", *_footer(plan)]) + "\n"


def render_table(plan: Plan) -> str:
    grid = [list(COLUMNS), *(_cells(o, plan.targets.include_warmup) for o in plan.outcomes)]
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
        "targets": {
            "hit_ratio": plan.targets.hit_ratio,
            "p99_s": plan.targets.p99_s,
            "max_failed_share": plan.targets.max_failed_share,
            "include_warmup": plan.targets.include_warmup,
        },
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
                "price_verified": o.price_verified,
                "meets": o.meets,
                "missed": plan.targets.missed(o.result),
                "warmup_s": o.result.warmup_s,
                "warmup_requests": o.result.warmup_requests,
                "steady": None if o.result.steady is None else _window(o.result.steady),
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
                        "rejected_loads",
                        "errors",
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


def _window(window: Window) -> dict[str, Any]:
    return {
        **asdict(window),
        "hit_ratio": window.hit_ratio,
        "failed_share": window.failed_share,
        "loads_per_hour": window.loads_per_hour,
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_dict(plan), indent=2) + "\n"


RENDERERS = {"table": render_table, "markdown": render_markdown, "json": render_json}
