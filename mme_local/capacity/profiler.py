"""`capacity profile`: load each distinct artifact once in the emulator and measure it.

The emulator runs with the model cache disabled and no budgets, so each model is downloaded,
loaded, measured while a lease pins it, then unloaded and deleted before the next one. Times
are the cache's own (its download, load and unload histograms); memory is the server's
measured resident memory (and NVML's used bytes with a GPU) around the load.

An empty TorchScript model is loaded twice first. The first load warms the runtime up: on the
embedded runtime it brings torch into the shared torch host (and its one CUDA context on a
GPU), as the cloud's Triton brings in libtorch once; the baseline is measured after it. The
second load's footprint is the fixed cost of one thin Python stub (the embedded runtime runs
one per TorchScript model; the cloud runs none), removed from each TorchScript footprint.
"""

from __future__ import annotations

import platform
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from mme_local.cache.layout import model_dir
from mme_local.capacity.errors import CapacityError
from mme_local.capacity.profile import Footprint, Profile
from mme_local.capacity.sources import Distinct, Progress
from mme_local.emulator import Emulator
from mme_local.gateway.errors import SageMakerError
from mme_local.gateway.service import InvokeRequest
from mme_local.metrics_reader import read_samples
from mme_local.settings import EmulatorSettings

EMPTY_MODEL = "mme-local-empty-torchscript.tar.gz"
_PLATFORM = re.compile(r'^\s*(?:platform|backend)\s*:\s*"([^"]+)"', re.MULTILINE)
_NO_LIMIT = 1 << 60


@dataclass(frozen=True)
class Sample:
    body: bytes
    content_type: str = "application/octet-stream"
    repeats: int = 5


def write_empty_model(directory: Path) -> Path:
    """An artifact with a TorchScript model that does nothing: what a stub costs by itself."""
    import torch

    from mme_local.artifacts.archive import make_archive

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    folder = directory / "empty-folder" / "empty"
    (folder / "1").mkdir(parents=True)
    torch.jit.script(Identity()).save(str(folder / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    (folder / "config.pbtxt").write_text(
        'platform: "pytorch_libtorch"\nmax_batch_size: 0\n'
        'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
        'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
    )
    return make_archive(folder, directory / EMPTY_MODEL)


def _platform(folder: Path) -> str:
    for config in sorted(folder.rglob("config.pbtxt")):
        match = _PLATFORM.search(config.read_text(errors="replace"))
        if match:
            return match.group(1)
    return "unknown"


def _histogram(samples: dict[str, float], name: str) -> tuple[float, float]:
    base = f"mme_{name}_seconds"
    return samples.get(f"{base}_sum", 0.0), samples.get(f"{base}_count", 0.0)


class _Measurer:
    def __init__(self, emulator: Emulator, sample: Sample | None) -> None:
        self.emulator = emulator
        self.sample = sample

    def _samples(self) -> dict[str, float]:
        return read_samples(self.emulator.metrics.render().decode())

    def _gpu(self) -> int | None:
        probe = self.emulator.cache.memory.gpu
        return None if probe is None else probe()

    async def baseline(self) -> tuple[int, int | None]:
        await self.emulator.cache.settle()
        return self.emulator.cache.memory.host(), self._gpu()

    async def measure(self, target: str, sample: Sample | None) -> Footprint:
        cache = self.emulator.cache
        await cache.settle()
        before = self._samples()
        host0, gpu0 = cache.memory.host(), self._gpu()
        async with cache.acquire(target) as lease:
            host1, gpu1 = cache.memory.host(), self._gpu()
            kind = _platform(model_dir(self.emulator.cache_dir, lease.name))
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


async def measure_footprints(
    distinct: list[Distinct],
    settings: EmulatorSettings,
    sample: Sample | None,
    progress: Progress,
) -> Profile:
    """Publish one copy of each distinct artifact to an embedded store and measure each."""
    with tempfile.TemporaryDirectory(prefix="mme-capacity-") as work:
        folder = Path(work) / "artifacts"
        folder.mkdir()
        write_empty_model(folder)
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
            measurer = _Measurer(emulator, sample)
            progress("warming up the runtime with an empty TorchScript model")
            await measurer.measure(EMPTY_MODEL, None)
            base_host, base_gpu = await measurer.baseline()
            progress("measuring an empty TorchScript model (the fixed cost of one stub)")
            empty = await measurer.measure(EMPTY_MODEL, None)
            footprints = []
            for number, item in enumerate(distinct, start=1):
                progress(f"measuring {item.target_models[0]} ({number}/{len(distinct)})")
                measured = await measurer.measure(f"{item.sha256}.tar.gz", sample)
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
    )
