"""`mme-local demo`: a real BERT, 200 TargetModels, a capacity that forces evictions, a report.

The workload is sent one request at a time, so the emulator's counts can be checked exactly
against an LRU cache of the same capacity replaying the same sequence: hits, loads, unloads
and downloads must agree, or the demo says so and fails.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mme_local.demo.config import DemoConfig, minilm_folder
from mme_local.demo.counts import measured_counts, metric
from mme_local.demo.disk import (
    check_disk,
    demo_needs,
    extracted_bytes,
    plan_disk,
    spill_dir,
    summary,
)
from mme_local.demo.encoder import Encoder, cosine
from mme_local.demo.oracle import simulate_lru
from mme_local.demo.report import DemoReport, render_table
from mme_local.demo.workload import PARAPHRASE, SENTENCES, UNRELATED, zipf_workload

if TYPE_CHECKING:
    from mme_local.background import RunningEmulator


def _send_workload(
    running: RunningEmulator,
    encoder: Encoder,
    names: list[str],
    sequence: list[int],
    console: Console,
) -> tuple[list[float], list[float]]:
    """Send the workload one request at a time; a request is cold when the hit counter stays."""
    client = running.runtime_client()
    sentences = random.Random(0)
    warm: list[float] = []
    cold: list[float] = []
    hits = metric(running.metrics(), "mme_model_cache_hit_total")
    columns = (
        TextColumn("[bold]invoke[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=len(sequence), detail="")
        for model in sequence:
            body, _ = encoder.body(sentences.choice(SENTENCES))
            started = time.perf_counter()
            client.invoke_endpoint(
                EndpointName=running.endpoint_name,
                TargetModel=names[model],
                ContentType="application/octet-stream",
                Body=body,
            )["Body"].read()
            elapsed_ms = (time.perf_counter() - started) * 1000
            samples = running.metrics()
            now_hits = metric(samples, "mme_model_cache_hit_total")
            (warm if now_hits > hits else cold).append(elapsed_ms)
            hits = now_hits
            counts = measured_counts(samples)
            detail = (
                f"hits {counts['hits']:g} · loads {counts['loads']:g} · "
                f"unloads {counts['unloads']:g} · loaded {counts['loaded']:g}"
            )
            bar.update(task, advance=1, detail=detail)
    return warm, cold


def _similarity(
    running: RunningEmulator, encoder: Encoder, target_model: str
) -> tuple[float, float]:
    client = running.runtime_client()

    def embed(sentence: str) -> npt.NDArray[np.float32]:
        body, mask = encoder.body(sentence)
        answer: bytes = client.invoke_endpoint(
            EndpointName=running.endpoint_name,
            TargetModel=target_model,
            ContentType="application/octet-stream",
            Body=body,
        )["Body"].read()
        return Encoder.sentence_embedding(answer, mask)

    first, second = (embed(s) for s in PARAPHRASE)
    other = embed(UNRELATED)
    return cosine(first, second), cosine(first, other)


def _check_disk(
    config: DemoConfig, archive: Path, distinct: int, cache_dir: Path, console: Console
) -> None:
    """Prints what the run will write where, and stops before publishing if it cannot fit."""
    archive_bytes = archive.stat().st_size
    needs = demo_needs(
        config.models,
        archive_bytes,
        distinct,
        extracted_bytes(archive),
        spill_dir(),
        cache_dir,
    )
    disks = plan_disk(needs)
    console.print(summary(disks))
    check_disk(disks, config.models)


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoReport:
    from mme_local.artifacts.archive import copy_names
    from mme_local.artifacts.package import package
    from mme_local.artifacts.templates import DEFAULT_TEMPLATE
    from mme_local.artifacts.upload import upload_with_progress
    from mme_local.background import run_in_thread
    from mme_local.settings import EmulatorSettings

    console = console or Console()
    folder = config.model_folder or minilm_folder()
    names = copy_names(config.name_pattern, config.models)
    sequence = zipf_workload(config.models, config.requests, config.zipf, config.seed)
    expected = simulate_lru(sequence, config.capacity)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mme-local-demo-") as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        template = DEFAULT_TEMPLATE[config.stack]
        with console.status(f"tracing {folder.name} to TorchScript and packaging it ({template})"):
            built = package(folder, work / "artifact", template, name_pattern="model.tar.gz")
        archive = built.archives[0]
        timings["package"] = time.perf_counter() - started
        console.print(f"built {archive.name}: {built.size_bytes / 2**20:.1f} MiB")
        _check_disk(config, archive, expected.distinct, work / "cache", console)
        settings = EmulatorSettings(
            port=0,
            max_loaded_models=config.capacity,
            cache_dir=work / "cache",
            stack=config.stack,
        )
        started = time.perf_counter()
        server = "TorchServe" if config.stack == "torchserve" else "Triton"
        with console.status(f"starting the endpoint (embedded S3, {server}, gateway)"):
            running = run_in_thread(settings)
        with running:
            timings["start"] = time.perf_counter() - started
            console.print(f"endpoint {running.endpoint_name} at {running.url}")
            started = time.perf_counter()
            upload_with_progress(
                running.s3_client(),
                running.model_data,
                [(archive, name) for name in names],
                console=console,
            )
            timings["publish"] = time.perf_counter() - started
            started = time.perf_counter()
            encoder = Encoder(folder)
            warm, cold = _send_workload(running, encoder, names, sequence, console)
            timings["workload"] = time.perf_counter() - started
            running.settle()  # the last evictions' unloads run in the background
            measured = measured_counts(running.metrics())
            # Checked after the counts are read: it may load one more model.
            similarity = _similarity(running, encoder, names[sequence[-1]])
    report = DemoReport(config, expected, measured, warm, cold, similarity, timings)
    console.print(render_table(report))
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    console.print(f"time: {phases}")
    if not report.passed:
        console.print("[red]the endpoint did not behave as expected (see the rows marked above)")
    return report
