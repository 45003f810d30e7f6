"""The demo's verdict: measured counts against the LRU replay, latencies, and a table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from mme_local.demo.config import DemoConfig
from mme_local.demo.oracle import LruOutcome


@dataclass
class DemoReport:
    config: DemoConfig
    expected: LruOutcome
    measured: dict[str, float]
    warm_ms: list[float] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    similarity: tuple[float, float] = (0.0, 0.0)
    """Cosine of the paraphrase pair, and of the first sentence with an unrelated one."""
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def outputs_real(self) -> bool:
        paraphrase, unrelated = self.similarity
        return paraphrase > unrelated

    @property
    def counts_agree(self) -> bool:
        return all(measured == expected for _, measured, expected in count_rows(self))

    @property
    def passed(self) -> bool:
        return self.outputs_real and self.counts_agree


def count_rows(report: DemoReport) -> list[tuple[str, float, float]]:
    """(label, measured, expected) for every count the demo checks."""
    expected, got = report.expected, report.measured
    return [
        ("requests", got["requests"], report.config.requests),
        ("cache hits", got["hits"], expected.hits),
        ("downloads", got["downloads"], expected.distinct),
        ("loads", got["loads"], expected.loads),
        ("unloads", got["unloads"], expected.unloads),
        ("loaded at the end", got["loaded"], expected.loaded_at_end),
        ("errors", got["errors"], 0),
    ]


def latency(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p99 = np.percentile(values, [50, 99])
    return f"{p50:.0f} / {p99:.0f}"


def render_table(report: DemoReport) -> Table:
    config, measured = report.config, report.measured
    table = Table(
        title=(
            f"{config.requests} requests, {config.models} TargetModels, "
            f"Zipf s={config.zipf:g}, capacity {config.capacity} loaded models"
        ),
        title_justify="left",
        caption=(
            f"expected: an LRU cache of {config.capacity} replaying the same requests. "
            "loads = requests - hits; unloads = loads - loaded at the end; "
            "downloads = distinct models (an unloaded model stays on disk)"
        ),
        caption_justify="left",
    )
    table.add_column("")
    table.add_column("measured", justify="right")
    table.add_column("expected", justify="right")
    table.add_column("")
    for label, got, want in count_rows(report):
        table.add_row(label, f"{got:g}", f"{want:g}", "ok" if got == want else "DIFFERS")
        if label == "cache hits":
            ratio = measured["hits"] / max(measured["requests"], 1)
            want_ratio = report.expected.hits / config.requests
            table.add_row("cache hit ratio", f"{ratio:.1%}", f"{want_ratio:.1%}", "")
    table.add_row(f"warm p50 / p99 ms (n={len(report.warm_ms)})", latency(report.warm_ms))
    table.add_row(f"cold p50 / p99 ms (n={len(report.cold_ms)})", latency(report.cold_ms))
    paraphrase, unrelated = report.similarity
    table.add_row(
        "cosine paraphrase / unrelated",
        f"{paraphrase:.2f} / {unrelated:.2f}",
        "first higher",
        "ok" if report.outputs_real else "WRONG",
    )
    return table
