"""Upload many archives under a ModelDataUrl prefix, a few at a time, skipping unchanged ones."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mme_local.store.publish import PublishReport, publish
from mme_local.store.s3url import S3Prefix

Progress = Callable[[str, str], None]


def publish_many(
    s3: Any,
    destination: S3Prefix,
    files: Sequence[tuple[Path, str]],
    workers: int = 4,
    progress: Progress | None = None,
) -> PublishReport:
    """`publish()` over `workers` threads; the report lists targets in the order given.

    Several uploads in flight hide each request's latency; boto3 clients are thread-safe.
    """
    slices = [list(files[start::workers]) for start in range(max(1, workers))]
    slices = [part for part in slices if part]
    if not slices:
        return PublishReport()
    with ThreadPoolExecutor(max_workers=len(slices), thread_name_prefix="publish") as pool:
        reports = list(pool.map(lambda part: publish(s3, destination, part, progress), slices))
    uploaded = {name for report in reports for name in report.uploaded}
    merged = PublishReport()
    for _, target in files:
        (merged.uploaded if target in uploaded else merged.unchanged).append(target)
    return merged


def upload_with_progress(
    s3: Any,
    destination: S3Prefix,
    files: Sequence[tuple[Path, str]],
    workers: int = 4,
    console: Any = None,
) -> PublishReport:
    """`publish_many` with a progress bar on stderr (or on `console`, a rich Console)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    counts = {"uploaded": 0, "unchanged": 0}
    lock = threading.Lock()
    columns = (
        TextColumn("[bold]upload[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True)) as bar:
        task = bar.add_task(destination.url(), total=len(files), detail="")

        def advance(_target: str, outcome: str) -> None:
            with lock:  # called from the upload threads
                counts[outcome] += 1
                detail = f"{counts['uploaded']} uploaded, {counts['unchanged']} unchanged"
            bar.update(task, advance=1, detail=detail)

        return publish_many(s3, destination, files, workers, advance)
