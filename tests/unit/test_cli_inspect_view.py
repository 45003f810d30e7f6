"""`models` and `stats` as a reader sees them: units, budgets, relative times, quantiles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cli.inspect_view import (
    Histogram as ReadHistogram,
)
from mme_local.cli.inspect_view import (
    ago,
    budget_lines,
    gauge_value,
    read_stats,
    size,
)
from mme_local.gateway.admin import model_row

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)


def test_sizes_carry_units() -> None:
    assert [size(v) for v in (None, 512, 2048, 91_059_866, 16 * 2**30)] == [
        "-", "512 B", "2.00 KiB", "86.8 MiB", "16.0 GiB",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"), [(12, "12 s ago"), (600, "10 min ago"), (9000, "2.5 h ago")]
)
def test_times_are_relative(seconds: int, text: str) -> None:
    assert ago((NOW - timedelta(seconds=seconds)).isoformat(), NOW) == text
    assert ago(None, NOW) == "-"


def test_budgets_read_as_used_of_limit() -> None:
    status = {
        "loaded_models": 2,
        "max_loaded_models": 2,
        "host_memory_bytes": 700 * 2**20,
        "host_memory_budget_bytes": 16 * 2**30,
        "gpu_memory_bytes": None,
        "gpu_memory_budget_bytes": 23_028 * 2**20,
        "disk_bytes": 2**30,
        "disk_budget_bytes": None,
    }
    assert budget_lines(status) == [
        "loaded models  2 of 2",
        "host memory    700.0 MiB of 16.0 GiB (4%)",
        "GPU memory     not measured (no GPU in use)",
        "disk           1.00 GiB (no limit)",
    ]


def test_several_instances_read_as_sums_against_budgets_times_the_count() -> None:
    status = {
        "instance_count": 2,
        "loaded_models": 3,
        "max_loaded_models": 2,
        "host_memory_bytes": 2**30,
        "host_memory_budget_bytes": 2**30,
        "gpu_memory_bytes": None,
        "disk_bytes": 2**30,
        "disk_budget_bytes": 2**31,
    }
    assert budget_lines(status) == [
        "instances      2, each with its own budgets (totals below)",
        "loaded models  3 of 4",
        "host memory    1.00 GiB of 2.00 GiB (50%)",
        "GPU memory     not measured (no GPU in use)",
        "disk           1.00 GiB of 4.00 GiB (25%)",
    ]


def test_a_model_on_disk_holds_no_memory_and_evictions_are_counted() -> None:
    entry = ModelEntry("m.tar.gz", "h" * 32)
    entry.memory_bytes = 300 * 2**20
    entry.state = ModelState.LOADED
    assert model_row(entry, 10)["memory_bytes"] == 300 * 2**20
    entry.state = ModelState.ON_DISK
    row = model_row(entry, 10, evictions=3)
    assert row["memory_bytes"] is None
    assert row["last_memory_bytes"] == 300 * 2**20
    assert row["evictions"] == 3


def test_quantiles_interpolate_within_the_bucket() -> None:
    histogram = ReadHistogram(
        "h", 100, 10.0, [(0.1, 50), (1.0, 90), (10.0, 100), (float("inf"), 100)]
    )
    assert histogram.quantile(0.5) == pytest.approx(0.1)
    assert histogram.quantile(0.7) == pytest.approx(0.1 + 0.9 * 0.5)
    assert histogram.quantile(0.99) == pytest.approx(1.0 + 9.0 * 0.9)
    assert histogram.mean == pytest.approx(0.1)
    assert ReadHistogram("empty").quantile(0.5) is None


def test_stats_keep_counters_gauges_and_histograms_apart() -> None:
    registry = CollectorRegistry()
    labels = ["endpoint_name", "variant_name"]
    invocations = Counter("mme_invocations", "", labels, registry=registry)
    hits = Counter("mme_model_cache_hit", "", labels, registry=registry)
    memory = Gauge("mme_host_memory_bytes", "", labels, registry=registry)
    latency = Histogram("mme_model_latency_seconds", "", labels, registry=registry)
    invocations.labels("e", "v").inc(4)
    hits.labels("e", "v").inc(3)
    memory.labels("e", "v").set(3 * 2**30)
    for value in (0.01, 0.02, 0.03, 2.0):
        latency.labels("e", "v").observe(value)
    stats = read_stats(generate_latest(registry).decode())
    assert [s.name for s in stats.counters] == [
        "mme_invocations_total",
        "mme_model_cache_hit_total",
    ]
    assert stats.hit_ratio == pytest.approx(0.75)
    assert [gauge_value(g) for g in stats.gauges] == ["3.00 GiB"]
    (histogram,) = stats.histograms
    assert histogram.count == 4 and histogram.mean == pytest.approx(0.515)
    assert histogram.quantile(0.5) is not None and histogram.quantile(0.5) <= 0.05
