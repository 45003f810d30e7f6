"""The measurements of `bench/gpu_check.py`, each a step that is measured or skipped with why."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
AWS_BERT_BASE_MB = 480  # AWS's published GPU memory for one TorchScript bert-base on Triton


@dataclass
class Step:
    name: str
    status: str = "measured"
    reason: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def skipped(name: str, reason: str) -> Step:
    return Step(name, status="skipped", reason=reason)


def gpu_apps() -> dict[int, int]:
    """Used GPU bytes per process id, as NVML reports them through nvidia-smi."""
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    output = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout
    apps: dict[int, int] = {}
    for line in output.splitlines():
        pid, _, used = (part.strip() for part in line.partition(","))
        if pid.isdigit() and used.isdigit():
            apps[int(pid)] = int(used) * MiB
    return apps


def stub_processes() -> int:
    """Python-backend stubs under this process (each loaded Python-based model is one)."""
    parents: dict[int, int] = {}
    stubs = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        pid, ppid = int(stat.parent.name), int(text[text.rindex(")") + 2 :].split()[1])
        parents[pid] = ppid
        if name.startswith("triton_python_b"):
            stubs.append(pid)
    me = os.getpid()

    def mine(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == me:
                return True
        return False

    return sum(mine(pid) for pid in stubs)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3, "n": len(ordered)}


class Endpoint:
    """One running emulator with its clients, and the objects published to it."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.s3 = running.s3_client()
        self.runtime = running.runtime_client(read_timeout=400)

    def publish(self, archive: Path, names: list[str]) -> None:
        prefix = self.running.model_data
        for name in names:
            self.s3.upload_file(str(archive), prefix.bucket, f"{prefix.prefix}{name}")

    def invoke(self, target: str, body: bytes) -> tuple[int, float, str]:
        """(HTTP status, seconds, error text) of one InvokeEndpoint."""
        started = time.perf_counter()
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.running.endpoint_name,
                TargetModel=target,
                ContentType="application/json",
                Body=body,
            )
            response["Body"].read()
            return 200, time.perf_counter() - started, ""
        except Exception as error:
            status = (
                getattr(error, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            )
            return int(status), time.perf_counter() - started, str(error)[:300]

    def evictions(self) -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = self.running.emulator.gateway.admin.evictions()
        return views

    def loaded(self) -> int:
        return int(self.running.metrics().get("mme_loaded_model_count", 0))


def torch_host_gpu(endpoint: Endpoint, target: str) -> dict[str, int]:
    """The torch host's GPU use (NVML, the whole process: one CUDA context for every
    TorchScript model), the target's tensors on the GPU as the host counts them, and how many
    of this emulator's processes hold GPU memory."""
    server = endpoint.running.emulator.server
    host = server.torch_host
    apps = gpu_apps()
    ours = set(server.process_ids())
    hosted = [h for h in host.hosted() if h.get("model") == target]
    return {
        "host_pid": host.pid or 0,
        "host_gpu_mib": apps.get(host.pid or 0, 0) // MiB,
        "model_tensors_mib": sum(int(h["gpu_bytes"]) for h in hosted) // MiB,
        "gpu_processes": sum(pid in ours for pid in apps),
    }


def cold_and_memory(endpoint: Endpoint, target: str, body: bytes, on_gpu: bool) -> Step:
    step = Step("cold load (first invocation: download, extract, load, infer)")
    before = torch_host_gpu(endpoint, target)["host_gpu_mib"] if on_gpu else 0
    status, seconds, error = endpoint.invoke(target, body)
    step.values.update(status=status, first_invocation_s=round(seconds, 3))
    if error:
        step.notes.append(error)
    metrics = endpoint.running.metrics()
    loading = metrics.get("mme_model_loading_time_seconds_sum", 0.0)
    step.values["triton_load_s"] = round(loading, 3)
    if on_gpu:
        after = torch_host_gpu(endpoint, target)
        step.values.update(after, host_gpu_added_mib=after["host_gpu_mib"] - before)
    return step


def warm_latency(endpoint: Endpoint, target: str, body: bytes, calls: int, label: str) -> Step:
    step = Step(f"warm latency, {label}")
    endpoint.invoke(target, body)
    samples = []
    for _ in range(calls):
        status, seconds, error = endpoint.invoke(target, body)
        if status != 200:
            step.status, step.reason = "failed", error
            return step
        samples.append(seconds)
    step.values.update({k: round(v, 2) for k, v in percentiles(samples).items()})
    return step


def budget_eviction(endpoint: Endpoint, targets: list[str], body: bytes, budget: int) -> Step:
    """Load copies one after another under a GPU budget; count what fits, explain evictions."""
    step = Step(f"eviction under a GPU budget of {budget / 2**30:.1f} GiB")
    most = 0
    for target in targets:
        status, _, error = endpoint.invoke(target, body)
        endpoint.running.settle()
        most = max(most, endpoint.loaded())
        if status != 200:
            step.notes.append(f"{target}: {status} {error}")
    evictions = endpoint.evictions()
    step.values.update(loaded_at_once=most, loads=len(targets), evictions=len(evictions))
    step.notes += [
        f"evicted {e['target_model']} ({e['reason']}; idle {e['idle_s']} s, "
        f"freed {e['freed_memory_bytes'] // MiB} MiB)"
        for e in evictions
    ]
    return step


def out_of_memory(endpoint: Endpoint, target: str, body: bytes, hog: str) -> Step:
    """With a hog holding nearly all free GPU memory, a real load runs out and is retried."""
    step = Step("a load that exhausts GPU memory (507, evict, retry)")
    status, _, error = endpoint.invoke(hog, b'{"inputs":[{"name":"x","shape":[1],'
                                            b'"datatype":"FP32","data":[1.0]}]}')  # fmt: skip
    step.values["hog_status"] = status
    if status != 200:
        step.status, step.reason = "failed", f"the hog did not load: {error}"
        return step
    endpoint.running.settle()
    status, seconds, error = endpoint.invoke(target, body)
    endpoint.running.settle()
    evictions = endpoint.evictions()
    step.values.update(status=status, seconds=round(seconds, 3), evictions=len(evictions))
    step.notes += [f"evicted {e['target_model']} ({e['reason']})" for e in evictions]
    if error:
        step.notes.append(error)
    return step


def workload(
    endpoint: Endpoint, targets: list[str], body: bytes, calls: int, concurrency: int,
    deadline: float,
) -> Step:  # fmt: skip
    """Every target invoked `calls` times in a row, `concurrency` targets at a time."""
    step = Step(f"workload: {len(targets)} TargetModels x {calls} calls, {concurrency} at a time")
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    peak_stubs = 0
    started = time.perf_counter()

    def one(target: str) -> list[tuple[int, float]]:
        if time.monotonic() > deadline:
            return []
        return [endpoint.invoke(target, body)[:2] for _ in range(calls)]

    with ThreadPoolExecutor(concurrency) as pool:
        for results in pool.map(one, targets):
            for status, seconds in results:
                statuses[status] += 1
                latencies.append(seconds)
            peak_stubs = max(peak_stubs, stub_processes())
    wall = time.perf_counter() - started
    endpoint.running.settle()
    metrics = endpoint.running.metrics()
    reasons = Counter(e["reason"] for e in endpoint.evictions())
    done = sum(statuses.values())
    step.values.update(
        requests=done, ok=statuses[200], errors=done - statuses[200], wall_s=round(wall, 1),
        loads=int(metrics.get("mme_model_loading_time_seconds_count", 0)),
        evictions=sum(reasons.values()), loaded_after=endpoint.loaded(),
        stubs_after=stub_processes(), peak_stubs=peak_stubs,
    )  # fmt: skip
    if latencies:
        step.values.update({k: round(v, 2) for k, v in percentiles(latencies).items()})
    if done < len(targets) * calls:
        step.notes.append(f"cut short by the time budget after {done} requests")
    step.notes += [f"{count} evictions: {reason}" for reason, count in sorted(reasons.items())]
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        step.notes.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']}")
    return step
