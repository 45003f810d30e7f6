"""`models` and `stats`: read a running endpoint's views and show them."""

from __future__ import annotations

import sys
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8080"
EndpointUrl = Annotated[
    str,
    typer.Option(
        "--endpoint-url", envvar="MME_LOCAL_ENDPOINT_URL", help="The local endpoint's gateway URL."
    ),
]


def _table_console() -> Console:
    """Tables go to stdout; piped, they keep full TargetModel names instead of 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 240)


def _get(url: str) -> httpx.Response:
    try:
        response = httpx.get(url, timeout=30)
    except httpx.TransportError as error:
        raise typer.BadParameter(f"no mme-local endpoint answers at {url} ({error})") from error
    response.raise_for_status()
    return response


def _plain(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False)


def models(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """The budgets, then the prefix's models with state, memory, last use and counts,
    least recently used first."""
    from datetime import datetime, timezone

    from mme_local.cli.inspect_view import ago, budget_lines, size

    status = _get(f"{endpoint_url}/_mme/status").json()
    rows = _get(f"{endpoint_url}/_mme/models").json()
    console = _table_console()
    _plain(console, f"endpoint {status.get('endpoint_name')} at {endpoint_url}")
    for line in budget_lines(status):
        _plain(console, f"  {line}")
    # With several instances, a model has a row per instance that knows it.
    several = int(status.get("instance_count") or 1) > 1
    if several:
        for item in status.get("instances", []):
            loaded = ", ".join(item.get("loaded", [])) or "-"
            running = "" if item.get("runtime_running") else " (restarting)"
            _plain(console, f"  instance {item.get('instance')}{running}: loaded {loaded}")
    now = datetime.now(timezone.utc)
    table = Table(title=None)
    columns = (
        *(("instance",) if several else ()),
        "TargetModel",
        "state",
        "size",
        "memory",
        "last used",
        "calls",
        "loads",
        "unloads",
        "evictions",
    )
    for column in columns:
        table.add_column(
            column,
            justify="left"
            if column in ("instance", "TargetModel", "state", "last used")
            else "right",
            no_wrap=column == "TargetModel",
        )
    for row in rows:
        instance = row.get("instance")
        table.add_row(
            *((("-" if instance is None else str(instance)),) if several else ()),
            row["target_model"],
            row["state"],
            size(row["size_bytes"]),
            size(row["memory_bytes"]),
            ago(row["last_used"], now),
            str(row["invocations"]),
            str(row["loads"]),
            str(row["unloads"]),
            str(row.get("evictions", 0)),
        )
    console.print(table)


def stats(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """The endpoint's CloudWatch-named metrics: counts with the cache hit ratio, latencies
    with p50 and p99, and the gauges in their units."""
    from mme_local.cli.inspect_view import gauge_value, read_stats, seconds

    read = read_stats(_get(f"{endpoint_url}/metrics").text)
    console = _table_console()

    counts = Table(title=f"counts at {endpoint_url}", title_justify="left")
    counts.add_column("counter")
    counts.add_column("total", justify="right")
    for sample in read.counters:
        counts.add_row(sample.label, f"{sample.value:,.0f}")
    ratio = read.hit_ratio
    counts.add_row("cache hit ratio", "-" if ratio is None else f"{ratio:.1%}")
    console.print(counts)

    latency = Table(
        title="latencies (p50 and p99 estimated from the buckets)", title_justify="left"
    )
    for column in ("histogram", "count", "mean", "p50", "p99"):
        latency.add_column(column, justify="left" if column == "histogram" else "right")
    for histogram in read.histograms:
        latency.add_row(
            histogram.name,
            f"{histogram.count:,.0f}",
            seconds(histogram.mean),
            seconds(histogram.quantile(0.5)),
            seconds(histogram.quantile(0.99)),
        )
    console.print(latency)

    now = Table(title="now", title_justify="left")
    now.add_column("gauge")
    now.add_column("value", justify="right")
    for sample in read.gauges:
        now.add_row(sample.label, gauge_value(sample))
    console.print(now)
