"""Instance utilisation as CloudWatch reports it for an endpoint, measured from /proc,
statvfs and nvidia-smi in a worker thread so the event loop never waits on them."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mme_local.background_task import BackgroundTask
from mme_local.metrics import Metrics

log = logging.getLogger(__name__)

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Utilisation:
    cpu_percent: float
    """CPU time of the model server's processes over wall time, summed over cores."""
    memory_percent: float
    disk_percent: float
    gpu_percent: float | None = None
    """Summed over GPUs (0-100 x GPUs); None without a GPU."""
    gpu_memory_percent: float | None = None


def _cpu_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; utime and stime follow it (fields 14, 15).
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def memory_percent(meminfo: Path = Path("/proc/meminfo")) -> float:
    values: dict[str, int] = {}
    for line in meminfo.read_text().splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    total = values["MemTotal"]
    return 100.0 * (total - values["MemAvailable"]) / total


def disk_percent(path: Path) -> float:
    """Used share of the file system holding `path`, as df computes it."""
    stats = os.statvfs(path)
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    usable = used + stats.f_bavail * stats.f_frsize
    return 100.0 * used / usable if usable else 0.0


def gpu_percents(nvidia_smi: str | None = None) -> tuple[float, float] | None:
    """(utilisation, memory utilisation) summed over GPUs, or None without a GPU."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        output = subprocess.run(
            [binary, "--query-gpu=utilization.gpu,memory.used,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    utilisation = memory = 0.0
    rows = [line.split(",") for line in output.splitlines() if line.strip()]
    if not rows:
        return None
    for gpu, used, total in rows:
        utilisation += float(gpu)
        memory += 100.0 * float(used) / float(total) if float(total) else 0.0
    return utilisation, memory


class CpuMeter:
    """CPU percent of a changing set of processes between two calls of `measure`."""

    def __init__(self) -> None:
        self._ticks: dict[int, int] = {}
        self._at = time.monotonic()

    def measure(self, pids: list[int]) -> float:
        now = time.monotonic()
        ticks: dict[int, int] = {}
        spent = 0
        for pid in pids:
            current = _cpu_ticks(pid)
            if current is None:
                continue
            ticks[pid] = current
            # A process first seen now only sets its baseline: its past is not this interval's.
            if pid in self._ticks:
                spent += max(0, current - self._ticks[pid])
        elapsed = now - self._at
        self._ticks, self._at = ticks, now
        return 100.0 * spent / _TICKS_PER_S / elapsed if elapsed > 0 else 0.0


class UtilisationSampler(BackgroundTask):
    """Publishes CPU, memory, disk and (with a GPU) GPU utilisation every `period_s`.

    `start()` inside the running loop, `await stop()` at shutdown. `pids` names each
    instance's model server processes (Triton and its backend stubs): each instance's CPU is
    measured apart, and the endpoint's is their sum. `disk_path` is the cache folder.
    """

    def __init__(
        self,
        metrics: Metrics,
        pids: Callable[[], list[list[int]]],
        disk_path: Path,
        period_s: float = 10.0,
        gpus: Callable[[], tuple[float, float] | None] = gpu_percents,
    ) -> None:
        self.metrics = metrics
        self.pids = pids
        self.disk_path = disk_path
        self.period_s = period_s
        self.gpus = gpus
        self._cpu: list[CpuMeter] = []
        """One meter per instance."""

    def _cpu_percent(self) -> float:
        each = self.pids()
        while len(self._cpu) < len(each):
            self._cpu.append(CpuMeter())
        meters = self._cpu[: len(each)]
        percents = [meter.measure(pids) for meter, pids in zip(meters, each, strict=True)]
        for index, percent in enumerate(percents):
            self.metrics.set_instance_cpu(index, percent)
        return sum(percents)

    def sample(self) -> Utilisation:
        """Measure once (blocking: run it in a thread) and set the gauges."""
        gpu = self.gpus()
        result = Utilisation(
            cpu_percent=self._cpu_percent(),
            memory_percent=memory_percent(),
            disk_percent=disk_percent(self.disk_path),
            gpu_percent=gpu[0] if gpu else None,
            gpu_memory_percent=gpu[1] if gpu else None,
        )
        self.metrics.cpu_utilization.set(result.cpu_percent)
        self.metrics.memory_utilization.set(result.memory_percent)
        self.metrics.disk_utilization.set(result.disk_percent)
        if gpu is not None:
            self.metrics.set_gpu_utilization(*gpu)
        return result

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sample)
            except Exception:  # a bad sample must not end the loop; the next one may work
                log.exception("measuring utilisation failed")
            await asyncio.sleep(self.period_s)
