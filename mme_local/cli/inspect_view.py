"""What `models` and `stats` show, from the admin views and the Prometheus text: plain data.

Budgets as used/limit, sizes with units, times relative to now, counters apart from gauges,
and latency quantiles read from the histograms' buckets the way Prometheus's
`histogram_quantile` reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# The endpoint's own labels are the same on every sample: they name nothing in a table.
_IDENTITY_LABELS = frozenset({"endpoint_name", "variant_name"})


def size(value: float | None) -> str:
    """Bytes with a binary unit: `512 B`, `87.3 MiB`, `1.20 GiB`."""
    if value is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= scale:
            number = value / scale
            return f"{number:,.2f} {unit}" if number < 10 else f"{number:,.1f} {unit}"
    return f"{value:,.0f} B"


def ago(iso: str | None, now: datetime) -> str:
    """`12 s ago`, `3 min ago`, `2.5 h ago`, `4 d ago` for an ISO 8601 time; `-` for none."""
    if not iso:
        return "-"
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _used_of(used: float | None, limit: float | None) -> str:
    if limit is None:
        return f"{size(used)} (no limit)"
    if used is None:
        return f"- of {size(limit)}"
    return f"{size(used)} of {size(limit)} ({100 * used / limit:.0f}%)" if limit else size(used)


def budget_lines(status: dict[str, Any]) -> list[str]:
    """The endpoint's budgets, each as used of limit. With several instances the figures are
    sums over them, against each budget times the instance count."""
    count = int(status.get("instance_count") or 1)

    def total(key: str) -> Any:
        limit = status.get(key)
        return limit * count if limit is not None else None

    loaded, most = status.get("loaded_models"), total("max_loaded_models")
    gpu = status.get("gpu_memory_bytes")
    return [
        *(
            [f"instances      {count}, each with its own budgets (totals below)"]
            if count > 1
            else []
        ),
        f"loaded models  {loaded} of {most if most is not None else 'no limit but memory'}",
        "host memory    "
        + _used_of(status.get("host_memory_bytes"), total("host_memory_budget_bytes")),
        "GPU memory     "
        + (
            _used_of(gpu, status.get("gpu_memory_budget_bytes"))
            if gpu is not None
            else "not measured (no GPU in use)"
        ),
        "disk           " + _used_of(status.get("disk_bytes"), total("disk_budget_bytes")),
    ]


@dataclass
class Histogram:
    name: str
    count: float = 0.0
    total: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)
    """(upper bound, cumulative count), +Inf last."""

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """As Prometheus's histogram_quantile: linear within the bucket holding rank q * count.
        A rank in the +Inf bucket answers the highest finite bound (a lower bound)."""
        if not self.count or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in sorted(self.buckets):
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower


@dataclass
class Sample:
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.name}{{{text}}}" if text else self.name


@dataclass
class Stats:
    counters: list[Sample] = field(default_factory=list)
    gauges: list[Sample] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)

    def counter(self, name: str) -> float | None:
        return next((s.value for s in self.counters if s.name == name and not s.labels), None)

    @property
    def hit_ratio(self) -> float | None:
        """Invocations that found their model loaded, of all invocations."""
        hits, total = (
            self.counter("mme_model_cache_hit_total"),
            self.counter("mme_invocations_total"),
        )
        return hits / total if hits is not None and total else None


def read_stats(text: str, prefix: str = "mme_") -> Stats:
    stats = Stats()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        if family.type == "histogram":
            histogram = Histogram(family.name)
            for sample in family.samples:
                if set(sample.labels) - {"le"} - _IDENTITY_LABELS:
                    continue
                if sample.name.endswith("_count"):
                    histogram.count = sample.value
                elif sample.name.endswith("_sum"):
                    histogram.total = sample.value
                elif sample.name.endswith("_bucket"):
                    histogram.buckets.append((float(sample.labels["le"]), sample.value))
            stats.histograms.append(histogram)
            continue
        kind = stats.counters if family.type == "counter" else stats.gauges
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = {k: v for k, v in sample.labels.items() if k not in _IDENTITY_LABELS}
            kind.append(Sample(sample.name, sample.value, labels))
    return stats


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"


def gauge_value(sample: Sample) -> str:
    """A gauge in its unit, read from its name."""
    if sample.name.endswith("_bytes"):
        return size(sample.value)
    if sample.name.endswith("_percent"):
        return f"{sample.value:.0f}%"
    if sample.name.endswith("_seconds"):
        return seconds(sample.value)
    return f"{sample.value:,.0f}"
