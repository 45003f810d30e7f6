"""TorchScript on the embedded Triton: the torch host against per-model stubs, in one run.

Two embedded Tritons run side by side: one with the per-model stubs that import torch (as
before the torch host), one with the torch host. Each loads `--models` copies of
all-MiniLM-L6-v2 traced (`platform: pytorch_libtorch`, hard-linked copies of one folder, each
loaded on its own) one at a time through the MME container API, the two taking turns at every
step so that a busy machine slows both alike, and the bench measures:
- cold load: the time of each POST /models;
- memory: resident memory of Triton and everything it runs (stubs, host) added per model,
  and what the cache's per-model probe reports;
- warm latency: `--warm` invocations of one model, one after another, the two servers taking
  turns every `--block` calls; and the same for a no-op TorchScript model with MiniLM's inputs
  and outputs (same request, same answer size), whose difference between the backends is the
  cost of the extra hop alone;
- where a loaded copy's memory lies on the torch host: the host's anonymous memory, the thin
  stubs' proportional share (PSS), Triton's own growth and the Python backend's shared-memory
  region of each stub (in /dev/shm, which no process's RSS shows);
- what is left after unloading them all.
`--fit N` then loads N copies at once on the torch host, stopping early (and saying so) if
the machine's available memory falls under `--reserve-gib`.

    .venv/bin/python bench/torch_host.py [--models 4] [--warm 200] [--block 20] [--fit 200]
        [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import append_result  # noqa: E402

PER_STUB_MODEL = Path(__file__).resolve().parent / "per_stub_pytorch_model.py"
MiB = 1 << 20


@dataclass
class Measured:
    backend: str
    load_s: list[float] = field(default_factory=list)
    added_bytes: int = 0
    probe_bytes: list[int] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    noop_s: list[float] = field(default_factory=list)
    left_bytes: int = 0
    where: dict[str, int] = field(default_factory=dict)
    """Per loaded copy, bytes by where they lie (torch host only)."""
    weights_bytes: int = 0


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _rollup(pid: int, key: str) -> int:
    """One field of /proc/PID/smaps_rollup, in bytes (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _shm_bytes(pids: list[int]) -> int:
    """Bytes allocated to the /dev/shm files these processes map (each file once)."""
    files: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        except OSError:
            continue
        files.update(line.split()[-1] for line in maps if " /dev/shm/" in line)
    total = 0
    for name in files:
        try:
            total += os.stat(name).st_blocks * 512
        except OSError:
            continue
    return total


def _where(server: object) -> dict[str, int]:
    """Memory of a torch-host Triton by where it lies."""
    host = server.torch_host.pid  # type: ignore[attr-defined]
    triton = server.pid  # type: ignore[attr-defined]
    stubs = [p for p in server.process_ids() if p not in (host, triton)]  # type: ignore[attr-defined]
    return {
        "torch host (anonymous)": _rollup(host, "Anonymous"),
        "thin stubs (PSS)": sum(_rollup(p, "Pss") for p in stubs),
        "Triton (PSS)": _rollup(triton, "Pss"),
        "Python backend shared memory (/dev/shm)": _shm_bytes([triton, *stubs]),
    }


def _noop_folder(folder: Path, work: Path) -> Path:
    """MiniLM's config with a module that computes nothing but answers the same shapes."""
    import torch

    class Noop(torch.nn.Module):
        def forward(
            self, ids: torch.Tensor, mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(ids.shape[0], ids.shape[1], 384), torch.zeros(ids.shape[0], 384)

    target = work / "noop" / folder.name
    (target / "1").mkdir(parents=True)
    shutil.copyfile(folder / "config.pbtxt", target / "config.pbtxt")
    torch.jit.script(Noop()).save(str(target / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    return target


def _copy(folder: Path, repository: Path) -> None:
    """A model repository holding `folder` as hard links: its own path, no extra disk."""
    target = repository / folder.name
    shutil.copytree(folder, target, copy_function=os.link)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _settled_rss(server: object) -> int:
    from mme_local.runtime.procs import rss_bytes

    await asyncio.sleep(1.0)
    return rss_bytes(server.process_ids())  # type: ignore[attr-defined]


async def _start(work: Path, backend: str) -> object:
    from mme_local.runtime import provision
    from mme_local.runtime.base import TritonSettings
    from mme_local.runtime.embedded import EmbeddedTriton
    from mme_local.runtime.torch_host_process import is_listening

    server = EmbeddedTriton(
        provision.ensure(), work / f"triton-{backend.replace(' ', '-')}", TritonSettings()
    )
    await server.start()
    if backend == "per-model stubs":
        # Triton reads a backend's model.py when a model loads, not when it starts.
        shutil.copyfile(PER_STUB_MODEL, server.work_dir / "backends" / "pytorch" / "model.py")
    # The host imports torch while Triton starts; measure loads once it listens.
    deadline = time.monotonic() + 120
    path = server.torch_host.socket_path
    while path and not is_listening(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return server


async def measure(
    folder: Path, work: Path, models: int, warm: int, block: int, body: bytes
) -> list[Measured]:
    """Both backends side by side, steps interleaved, so that the machine's other load falls
    on both alike."""
    from mme_local.runtime.client import ContainerClient
    from mme_local.runtime.probes import ServerProbes
    from mme_local.runtime.procs import rss_bytes

    backends = ("per-model stubs", "torch host")
    results = [Measured(name) for name in backends]
    servers = [await _start(work, name) for name in backends]
    clients = [ContainerClient(s.url) for s in servers]  # type: ignore[attr-defined]
    pairs = list(zip(results, servers, clients, strict=True))
    try:
        before = [await _settled_rss(server) for server in servers]
        where_before = _where(servers[1])
        for i in range(models):
            for result, _, client in pairs:
                repository = work / result.backend.replace(" ", "-") / f"m{i}" / "model"
                _copy(folder, repository)
                started = time.perf_counter()
                await client.load(f"m{i}", str(repository), f"model-{i}.tar.gz")
                result.load_s.append(time.perf_counter() - started)
                await client.invoke(f"m{i}", f"model-{i}.tar.gz", body, "application/json")
                print(f"{result.backend}: loaded m{i} in {result.load_s[-1]:.2f} s",
                      file=sys.stderr)  # fmt: skip
        await asyncio.sleep(1.0)
        host_where = _where(servers[1])
        results[1].where = {
            key: (host_where[key] - where_before[key]) // models for key in host_where
        }
        for (result, server, _), base in zip(pairs, before, strict=True):
            result.added_bytes = (rss_bytes(server.process_ids()) - base) // models  # type: ignore[attr-defined]
            probes = ServerProbes(server)  # type: ignore[arg-type]
            for i in range(models):
                probed = await asyncio.to_thread(probes.model_memory, f"m{i}")
                result.probe_bytes.append(probed or 0)
        noop = _noop_folder(folder, work)
        for result, _, client in pairs:
            repository = work / result.backend.replace(" ", "-") / "noop" / "model"
            shutil.copytree(noop, repository / noop.name)
            await client.load("noop", str(repository), "noop.tar.gz")
        for _ in range(10):
            for _, _, client in pairs:
                await client.invoke("m0", "model-0.tar.gz", body, "application/json")
                await client.invoke("noop", "noop.tar.gz", body, "application/json")
        # In blocks, taking turns: one server alone at a time (as in use: the other one's
        # OpenMP threads spinning after each call would slow the next call of the other),
        # blocks short enough that a busy spell of the machine falls on both alike.
        for _ in range(0, warm, block):
            for target, name in (("m0", "model-0.tar.gz"), ("noop", "noop.tar.gz")):
                for result, _, client in pairs:
                    times = result.warm_s if target == "m0" else result.noop_s
                    for _ in range(block):
                        started = time.perf_counter()
                        await client.invoke(target, name, body, "application/json")
                        times.append(time.perf_counter() - started)
        for _, _, client in pairs:
            await client.unload("noop", "noop.tar.gz")
        for i in range(models):
            for _, _, client in pairs:
                await client.unload(f"m{i}", f"model-{i}.tar.gz")
        await asyncio.sleep(3.0)  # stubs end after the unload answers
        for (result, server, _), base in zip(pairs, before, strict=True):
            result.left_bytes = await _settled_rss(server) - base
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            await server.stop()  # type: ignore[attr-defined]
    return results


async def fit(folder: Path, work: Path, count: int, reserve: int, body: bytes) -> list[str]:
    from mme_local.runtime.client import ContainerClient
    from mme_local.runtime.procs import rss_bytes

    server = await _start(work, "torch host")
    client = ContainerClient(server.url, load_timeout_s=600)  # type: ignore[attr-defined]
    lines = []
    stopped = ""
    loaded = 0
    lowest = available_bytes()
    started = time.perf_counter()
    try:
        for i in range(count):
            if available_bytes() < reserve:
                stopped = f" (stopped at {loaded}: available memory under the reserve)"
                break
            repository = work / f"fit-{i}" / "model"
            _copy(folder, repository)
            await client.load(f"f{i}", str(repository), f"model-{i}.tar.gz")
            loaded += 1
            lowest = min(lowest, available_bytes())
            if loaded % 20 == 0:
                print(f"fit: {loaded} loaded, {available_bytes() / MiB:.0f} MiB available",
                      file=sys.stderr)  # fmt: skip
        load_s = time.perf_counter() - started
        total = rss_bytes(server.process_ids())  # type: ignore[attr-defined]
        answered = 0
        for i in range(loaded):
            await client.invoke(f"f{i}", f"model-{i}.tar.gz", body, "application/json")
            answered += 1
        lines += [
            f"| TargetModels loaded at once | {loaded} of {count}{stopped} |",
            f"| all of them answered an invocation afterwards | {answered} of {loaded} |",
            f"| resident memory of Triton + stubs + host | {total / MiB:,.0f} MiB "
            f"({total / max(loaded, 1) / MiB:.0f} MiB per model) |",
            f"| lowest MemAvailable of the machine while loading | {lowest / MiB:,.0f} MiB |",
            f"| time to load them one after another | {load_s:.0f} s |",
        ]
    finally:
        await client.aclose()
        await server.stop()  # type: ignore[attr-defined]
    return lines


def _row(m: Measured) -> str:
    return (
        f"| {m.backend} | {statistics.median(m.load_s):.2f} ({min(m.load_s):.2f}-"
        f"{max(m.load_s):.2f}) | {m.added_bytes / MiB:.0f} | "
        f"{statistics.median(m.probe_bytes) / MiB:.0f} | "
        f"{statistics.median(m.warm_s) * 1000:.2f} | {_percentile(m.warm_s, 0.99) * 1000:.1f} | "
        f"{statistics.median(m.noop_s) * 1000:.2f} | {m.left_bytes / MiB:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--block", type=int, default=20, help="warm calls per turn")
    parser.add_argument("--fit", type=int, default=0, help="then load this many at once")
    parser.add_argument("--reserve-gib", type=float, default=2.0)
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()

    from mme_local.artifacts.package import build_model_folder
    from mme_local.demo.config import minilm_folder
    from mme_local.demo.encoder import Encoder

    source = minilm_folder()
    body, _ = Encoder(source).body("The torch host keeps every TorchScript module in one process.")
    with tempfile.TemporaryDirectory(prefix="mme-torch-host-bench-") as scratch:
        work = Path(scratch)
        folder = build_model_folder("bert-torchscript", source, work / "built", 8, "cpu")
        weights = sum(p.stat().st_size for p in folder.rglob("*.pt"))
        results = (
            asyncio.run(measure(folder, work, args.models, args.warm, args.block, body))
            if args.models
            else []
        )
        fitted = (
            asyncio.run(fit(folder, work, args.fit, int(args.reserve_gib * (1 << 30)), body))
            if args.fit
            else []
        )
    if results:
        table = _comparison(results, weights)
        print(table)
        if args.write:
            append_result(
                "TorchScript: the torch host against per-model stubs",
                f"{args.models} copies of all-MiniLM-L6-v2 traced (`pytorch_libtorch`, "
                "KIND_CPU) loaded one at a time through the container API of two embedded "
                "Tritons running side by side (one per backend, taking turns at every step), "
                f"then one model of each invoked {args.warm} times, and a no-op TorchScript "
                f"model with the same inputs and outputs as many, in turns of {args.block} "
                f"calls (JSON body, {len(body)} bytes; answer: 14 token vectors and the pooled "
                "one); memory is the resident memory of each Triton's process tree (with its "
                "torch host), 1 s after the last load.",
                table,
            )
    if fitted:
        table = "\n".join(["| on the torch host | |", "|---|---:|", *fitted])
        print(table)
        if args.write:
            append_result(
                f"TorchScript: {args.fit} MiniLM TargetModels loaded at once on the torch host",
                f"all-MiniLM-L6-v2 traced ({weights / MiB:.0f} MiB of weights), hard-linked "
                "copies loaded one after another through the container API of one embedded "
                f"Triton, stopping if the machine's available memory fell under "
                f"{args.reserve_gib:g} GiB (the machine is shared).",
                table,
            )


def _comparison(results: list[Measured], weights: int) -> str:
    stubs, host = results
    ratio_load = statistics.median(host.load_s) / statistics.median(stubs.load_s)
    ratio_warm = statistics.median(host.warm_s) / statistics.median(stubs.warm_s)
    hop_ms = (statistics.median(host.noop_s) - statistics.median(stubs.noop_s)) * 1000
    where = [f"{key} {value / MiB:.1f} MiB" for key, value in host.where.items()]
    return "\n".join(
        [
            "| backend | cold load s, median (min-max) | host memory added per model MiB "
            "| per-model probe MiB | warm p50 ms | warm p99 ms | no-op model p50 ms "
            "| left after unloading all MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(_row(m) for m in results),
            "",
            f"- MiniLM weights (model.pt): {weights / MiB:.0f} MiB; memory added per model on "
            f"the torch host: weights + {(host.added_bytes - weights) / MiB:.0f} MiB "
            f"(per-model stubs: weights + {(stubs.added_bytes - weights) / MiB:.0f} MiB).",
            f"- cold load, torch host / per-model stubs: **{ratio_load:.2f}x**; "
            f"warm p50: **{ratio_warm:.2f}x**; the hop alone (no-op model, torch host less "
            f"per-model stubs): {hop_ms:+.2f} ms at p50.",
            f"- each loaded copy on the torch host, by where it lies: {'; '.join(where)}.",
        ]
    )


if __name__ == "__main__":
    main()
