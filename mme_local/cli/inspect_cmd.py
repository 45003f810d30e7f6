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


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.1f}"


def models(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """List the prefix's models with state, size, last use and counts, least recent first."""
    rows = _get(f"{endpoint_url}/_mme/models").json()
    table = Table(title=f"models at {endpoint_url}")
    for column in (
        "TargetModel",
        "state",
        "size MiB",
        "memory MiB",
        "last used",
        "calls",
        "loads",
        "unloads",
    ):
        table.add_column(
            column,
            justify="left" if column in ("TargetModel", "state", "last used") else "right",
            no_wrap=column == "TargetModel",
        )
    for row in rows:
        table.add_row(
            row["target_model"],
            row["state"],
            _mib(row["size_bytes"]),
            _mib(row["memory_bytes"]),
            row["last_used"] or "-",
            str(row["invocations"]),
            str(row["loads"]),
            str(row["unloads"]),
        )
    _table_console().print(table)


def stats(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Show the endpoint's CloudWatch-named metrics as a table."""
    from mme_local.metrics_reader import read_rows

    text = _get(f"{endpoint_url}/metrics").text
    table = Table(title=f"metrics at {endpoint_url}")
    for column in ("metric", "count / value", "mean", "total"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in read_rows(text):
        if row.kind == "histogram":
            total = row.total or 0.0
            mean = f"{1000 * total / row.value:,.2f} ms" if row.value else "-"
            table.add_row(row.name, f"{row.value:,.0f}", mean, f"{total:,.3f} s")
            continue
        label = ",".join(f"{k}={v}" for k, v in row.labels.items())
        name = f"{row.name}{{{label}}}" if label else row.name
        table.add_row(name, f"{row.value:,.0f}", "", "")
    _table_console().print(table)
