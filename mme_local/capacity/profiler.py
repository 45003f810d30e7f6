"""`capacity profile`: load each distinct artifact once in the emulator and measure it.

The emulator runs with the model cache disabled and no budgets, so each model is downloaded,
loaded, measured while a lease pins it, then unloaded and deleted before the next one. Times
are the cache's own (its download, load and unload histograms); memory is the server's
measured resident memory (and NVML's used bytes with a GPU) around the load. Artifacts of the
other stack are refused before anything starts.

A measurement during which the model server died (the supervisor restarts it) is thrown away
and taken again on the restarted server, warmed up first, up to `_ATTEMPTS` times: a crash
of the server (Triton has segfaulted on an unload) must not fail a profile or skew its figures.

An empty TorchScript model, in the stack's layout, is loaded twice first. The first load warms
the runtime up: on the embedded Triton it brings torch into the shared torch host (and its one
CUDA context on a GPU), as the cloud's Triton brings in libtorch once; the baseline is measured
after it. The second load's footprint is the fixed cost of one per-model process: a thin
Python stub on Triton (the cloud runs none: removed from each TorchScript footprint) or a
worker with torch on TorchServe (the cloud runs one too: kept).
"""

from __future__ import annotations

import asyncio
import platform
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from mme_local.artifacts.lint import stack_of
from mme_local.artifacts.lint_torchserve import MANIFEST, wrong_stack
from mme_local.cache.layout import model_dir
from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.sources import Distinct, Progress
from mme_local.emulator import Emulator
from mme_local.gateway.errors import SageMakerError
from mme_local.gateway.service import InvokeRequest
from mme_local.metrics_reader import read_samples
from mme_local.runtime.errors import RuntimeExited
from mme_local.settings import EmulatorSettings

EMPTY_MODEL = "mme-local-empty-torchscript.tar.gz"
_PLATFORM = re.compile(r'^\s*(?:platform|backend)\s*:\s*"([^"]+)"', re.MULTILINE)
_KIND = re.compile(r"\bkind\s*:\s*(KIND_GPU|KIND_CPU)\b")
_GROUP = re.compile(r"\binstance_group\b")
_COUNT = re.compile(r"\bcount\s*:\s*(\d+)")
_NO_LIMIT = 1 << 60
_T = TypeVar("_T")
_ATTEMPTS = 3
"""Tries per measurement when the model server dies during one."""
_RESTART_WAIT_S = 120.0
"""How long a measurement waits for the supervisor to bring a dead model server back."""
_DEATH_GRACE_S = 2.0
"""How long a failed measurement waits for the server's death to show before the failure is
called the measurement's own: a crashing Triton's first thread can end, and the request on
it fail, while its other threads are still being torn down and its exit can't be seen."""


@dataclass(frozen=True)
class Sample:
    body: bytes
    content_type: str = "application/octet-stream"
    repeats: int = 5


def write_empty_model(directory: Path, stack: str = "triton") -> Path:
    """An artifact with a TorchScript model that does nothing, in `stack`'s layout: what a
    stub (Triton) or a worker (TorchServe, with the bert-torchserve handler) costs by itself."""
    import torch

    from mme_local.artifacts.archive import make_archive

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    folder = directory / "empty-folder" / "empty"
    if stack == "torchserve":
        _torchserve_layout(folder)
        weights = folder / "model.pt"
    else:
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(
            'platform: "pytorch_libtorch"\nmax_batch_size: 0\n'
            'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
            'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        )
        weights = folder / "1" / "model.pt"
    torch.jit.script(Identity()).save(str(weights))  # type: ignore[no-untyped-call]
    return make_archive(folder, directory / EMPTY_MODEL)


def _torchserve_layout(folder: Path) -> None:
    """torch-model-archiver's layout around a model.pt yet to be written: the manifest, and
    the bert-torchserve template's handler and model-config.yaml."""
    import json
    import shutil

    from mme_local.artifacts.package import torchserve_manifest
    from mme_local.artifacts.templates import template_dir

    (folder / "MAR-INF").mkdir(parents=True)
    for name in ("handler.py", "model-config.yaml"):
        shutil.copyfile(template_dir("bert-torchserve") / name, folder / name)
    manifest = json.dumps(torchserve_manifest(folder.name), indent=2) + "\n"
    (folder / MANIFEST).write_text(manifest, encoding="utf-8")


def stack_refusal(archive: Path, stack: str) -> str | None:
    """One line when `archive` holds the other stack's layout; None when it holds this one's,
    neither, or cannot be read (its load then says what is wrong)."""
    found = stack_of(archive)
    return None if found is None or found == stack else wrong_stack(found, stack)


def _platform(folder: Path) -> str:
    if next(folder.glob(f"**/{MANIFEST}"), None) is not None:
        return "torchserve"
    for config in sorted(folder.rglob("config.pbtxt")):
        match = _PLATFORM.search(config.read_text(errors="replace"))
        if match:
            return match.group(1)
    return "unknown"


def _instance_kind(folder: Path) -> str | None:
    """KIND_CPU if any config places its instances on the CPU, KIND_GPU if one names the GPU,
    None if none says (Triton's default: one instance per GPU)."""
    kinds = {
        match.group(1)
        for config in sorted(folder.rglob("config.pbtxt"))
        for match in _KIND.finditer(config.read_text(errors="replace"))
    }
    if "KIND_CPU" in kinds:
        return "KIND_CPU"
    return "KIND_GPU" if kinds else None


def _instance_count(folder: Path) -> int | None:
    """The instance groups' counts in the first config that has any, summed."""
    for config in sorted(folder.rglob("config.pbtxt")):
        text = config.read_text(errors="replace")
        group = _GROUP.search(text)
        if group:
            counts = [int(n) for n in _COUNT.findall(text[group.start() :])]
            return sum(counts) or None
    return None


def _histogram(samples: dict[str, float], name: str) -> tuple[float, float]:
    base = f"mme_{name}_seconds"
    return samples.get(f"{base}_sum", 0.0), samples.get(f"{base}_count", 0.0)


class _Measurer:
    """Measures on the emulator's first instance, again on the restarted server if the server
    died during a measurement. A fresh server is warmed up (one load of the empty model)
    before its first measurement, as the first one was."""

    def __init__(self, emulator: Emulator, sample: Sample | None, progress: Progress) -> None:
        self.emulator = emulator
        self.sample = sample
        self.progress = progress
        self._warm_since: int | None = None
        """The supervisor's exit count when a server was last warmed up (None: not yet); a
        restarted server has a higher count, so it is warmed up again."""

    def _samples(self) -> dict[str, float]:
        return read_samples(self.emulator.metrics.render().decode())

    def _gpu(self) -> int | None:
        probe = self.emulator.cache.memory.gpu
        return None if probe is None else probe()

    async def baseline(self) -> tuple[int, int | None]:
        async def read() -> tuple[int, int | None]:
            await self.emulator.cache.settle()
            return self.emulator.cache.memory.host(), self._gpu()

        return await self._on_one_server("the server's own memory", read)

    async def measure(self, target: str, sample: Sample | None, name: str = "") -> Footprint:
        """`name`: the model as the user knows it (default: `target`)."""
        step = lambda: self._measure_once(target, sample)  # noqa: E731
        return await self._on_one_server(name or target, step)

    async def _on_one_server(self, what: str, step: Callable[[], Awaitable[_T]]) -> _T:
        """`step`'s result from a warmed-up server that stayed up from the warm-up to its end."""
        supervisor = self.emulator.supervisor
        for attempt in range(1, _ATTEMPTS + 1):
            if attempt > 1:
                self.progress(
                    f"the model server died while measuring {what}; measuring it again "
                    f"on the restarted server ({attempt}/{_ATTEMPTS})"
                )
            await self._server_up(what)
            exits = supervisor.exits
            try:
                if self._warm_since != exits:
                    self.progress("warming up the runtime with an empty TorchScript model")
                    await self._measure_once(EMPTY_MODEL, None)
                    self._warm_since = exits
                    if self._died_since(exits):
                        continue  # no step on a server that is gone
                result = await step()
            except Exception:
                if not await self._seen_dead_since(exits):
                    raise  # the step's own failure, not the server's death
            else:
                if not self._died_since(exits):
                    return result
        raise CapacityError(
            f"the model server died {_ATTEMPTS} times while measuring {what}; "
            "its last log lines above say why"
        )

    def _died_since(self, exits: int) -> bool:
        supervisor = self.emulator.supervisor
        return supervisor.exits != exits or not self._up()

    async def _seen_dead_since(self, exits: int) -> bool:
        """Whether the server died since `exits`, given up to `_DEATH_GRACE_S` to show it."""
        return await _within(_DEATH_GRACE_S, lambda: self._died_since(exits))

    def _up(self) -> bool:
        """Up as far as anyone can tell: the supervisor may not have noticed an exit yet."""
        if not self.emulator.supervisor.running:
            return False
        try:
            if self.emulator.server is not None:
                self.emulator.server.check_alive()
        except RuntimeExited:
            return False
        return True

    async def _server_up(self, what: str) -> None:
        if not await _within(_RESTART_WAIT_S, self._up):
            raise CapacityError(
                f"the model server did not come back within {_RESTART_WAIT_S:.0f} s "
                f"to measure {what}; its last log lines above say why"
            )

    async def _measure_once(self, target: str, sample: Sample | None) -> Footprint:
        cache = self.emulator.cache
        await cache.settle()
        before = self._samples()
        host0, gpu0 = cache.memory.host(), self._gpu()
        async with cache.acquire(target) as lease:
            host1, gpu1 = cache.memory.host(), self._gpu()
            folder = model_dir(self.emulator.cache_dir, lease.name)
            kind, placed = _platform(folder), _instance_kind(folder)
            count = _instance_count(folder)
            extracted = lease.entry.disk_bytes
            if sample is not None:
                await self._invoke(target, sample)
        await cache.settle()
        after = self._samples()

        def delta(name: str) -> tuple[float, float]:
            (s0, c0), (s1, c1) = _histogram(before, name), _histogram(after, name)
            return s1 - s0, c1 - c0

        latency, calls = delta("model_latency")
        return Footprint(
            sha256="",
            target_models=[target],
            platform=kind,
            archive_bytes=0,
            extracted_bytes=extracted,
            download_s=delta("model_downloading_time")[0],
            load_s=delta("model_loading_time")[0],
            unload_s=delta("model_unloading_time")[0],
            host_memory_bytes=max(0, host1 - host0),
            gpu_memory_bytes=None if gpu0 is None or gpu1 is None else max(0, gpu1 - gpu0),
            warm_latency_s=latency / calls if calls else None,
            instance_kind=placed,
            instance_count=count,
        )

    async def _invoke(self, target: str, sample: Sample) -> None:
        service = self.emulator.gateway.service
        for _ in range(sample.repeats):
            request = InvokeRequest(
                endpoint_name=self.emulator.settings.endpoint_name,
                target_model=target,
                body=sample.body,
                request_id=str(uuid.uuid4()),
                content_type=sample.content_type,
            )
            try:
                await service.invoke(request)
            except SageMakerError as error:
                raise CapacityError(
                    f"the sample request failed on {target}: {error}; "
                    "pass a body that the model accepts with --sample"
                ) from None


async def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds within `seconds`, asked every 50 ms."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def measure_footprints(
    distinct: list[Distinct],
    settings: EmulatorSettings,
    sample: Sample | None,
    progress: Progress,
) -> Profile:
    """Publish one copy of each distinct artifact to an embedded store and measure each."""
    for item in distinct:
        refusal = await asyncio.to_thread(stack_refusal, item.path, settings.stack)
        if refusal is not None:
            raise CapacityError(f"{item.target_models[0]}: {refusal}")
    with tempfile.TemporaryDirectory(prefix="mme-capacity-") as work:
        folder = Path(work) / "artifacts"
        folder.mkdir()
        write_empty_model(folder, settings.stack)
        for item in distinct:
            (folder / f"{item.sha256}.tar.gz").symlink_to(item.path.resolve())
        settings = settings.model_copy(
            update={
                "models_dir": folder,
                "s3_endpoint_url": None,
                "model_cache": "Disabled",
                "max_loaded_models": None,
                "memory_limit_bytes": _NO_LIMIT,
                "gpu_memory_limit_bytes": _NO_LIMIT,
                "disk_limit_bytes": None,
            }
        )
        emulator = Emulator(settings, progress)
        await emulator.start()
        try:
            measurer = _Measurer(emulator, sample, progress)
            base_host, base_gpu = await measurer.baseline()
            cost = "worker" if settings.stack == "torchserve" else "stub"
            progress(f"measuring an empty TorchScript model (the fixed cost of one {cost})")
            empty = await measurer.measure(EMPTY_MODEL, None, "the empty model")
            footprints = []
            for number, item in enumerate(distinct, start=1):
                progress(f"measuring {item.target_models[0]} ({number}/{len(distinct)})")
                measured = await measurer.measure(
                    f"{item.sha256}.tar.gz", sample, item.target_models[0]
                )
                footprints.append(
                    replace(
                        measured,
                        sha256=item.sha256,
                        target_models=sorted(item.target_models),
                        archive_bytes=item.path.stat().st_size,
                    )
                )
        finally:
            await emulator.stop()
    stub_applies = settings.runtime == "embedded"
    return Profile(
        runtime=settings.runtime,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine=f"{platform.machine()}, {platform.system()} {platform.release()}",
        baseline_host_bytes=base_host,
        baseline_gpu_bytes=base_gpu,
        stub_host_bytes=empty.host_memory_bytes if stub_applies else 0,
        stub_gpu_bytes=empty.gpu_memory_bytes if stub_applies else None,
        artifacts=footprints,
        stack=settings.stack,
    )
