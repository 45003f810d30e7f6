"""The order of the GPU check's steps and the emulator each runs against."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gpu_measure import (
    AWS_BERT_BASE_MB,
    Endpoint,
    MiB,
    Step,
    budget_eviction,
    cold_and_memory,
    gpu_apps,
    out_of_memory,
    skipped,
    warm_latency,
    workload,
)
from bench.gpu_models import (
    BERT_BASE,
    BERT_TINY,
    BertShape,
    bert_archive,
    hog_archive,
    request_body,
    traced_bert,
)

GiB = 1024**3
# The workload cycles many small copies: a vocabulary of 1000 keeps each archive near 2 MB.
WORKLOAD_SHAPE = BertShape(layers=2, hidden=128, heads=2, intermediate=512, vocab=1000)
MEMORY_STEP = "GPU memory per model (from the torch host: NVML and its tensors)"
EMPTY_SHAPE = BertShape(layers=1, hidden=8, heads=1, intermediate=8, vocab=8, positions=16)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _emulator(scratch: Path, name: str, **settings: Any) -> Any:
    from mme_local.background import RunningEmulator
    from mme_local.settings import EmulatorSettings

    cache = scratch / f"cache-{name}"
    cache.mkdir()
    return RunningEmulator(EmulatorSettings(port=0, cache_dir=cache, **settings))


def _why_no_gpu(dry_run: bool) -> str:
    if dry_run:
        return "--dry-run"
    import torch

    from mme_local.runtime.gpus import visible_gpus

    if not visible_gpus():
        return "nvidia-smi shows no GPU"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA"
    return ""


def run_all(args: argparse.Namespace, deadline: float) -> tuple[list[Step], dict[str, Any]]:
    import torch

    from mme_local.runtime.gpus import visible_gpus

    no_gpu = _why_no_gpu(args.dry_run)
    on_gpu = not no_gpu
    gpus = visible_gpus()
    facts: dict[str, Any] = {
        "gpu": gpus[0].name if gpus and on_gpu else f"no GPU ({no_gpu})",
        "torch": torch.__version__,
        "dry_run": args.dry_run,
    }
    kind = "KIND_GPU" if on_gpu else "KIND_CPU"
    shape = BERT_BASE if on_gpu else BERT_TINY
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="mme-gpu-run-") as scratch_name:
        scratch = Path(scratch_name)
        _say(f"tracing a {shape.layers}-layer, hidden-{shape.hidden} BERT with random weights")
        script = traced_bert(shape)
        main = bert_archive(scratch / "main.tar.gz", script, shape, kind)
        cpu = bert_archive(scratch / "cpu.tar.gz", script, shape, "KIND_CPU")
        body = request_body(128, shape.vocab)
        facts["model"] = f"{shape} ({main.stat().st_size // MiB} MiB archive)"
        steps += _single_model(scratch, main, cpu, body, on_gpu, no_gpu, args)
        if on_gpu:
            steps.append(_budget(scratch, main, body, args.gpu_budget_gib, steps))
            steps.append(_oom(scratch, main, body))
        else:
            steps.append(skipped("eviction under a GPU budget", no_gpu))
            steps.append(skipped("a load that exhausts GPU memory (507, evict, retry)", no_gpu))
        steps.append(_workload(scratch, kind, on_gpu, args, deadline))
    return steps, facts


def _single_model(
    scratch: Path, main: Path, cpu: Path, body: bytes, on_gpu: bool, no_gpu: str,
    args: argparse.Namespace,
) -> list[Step]:  # fmt: skip
    steps: list[Step] = []
    warm_calls = args.warm_calls or (200 if on_gpu else 30)
    with _emulator(scratch, "single", gpu_memory_limit_bytes=1 << 50) as running:
        endpoint = Endpoint(running)
        endpoint.publish(main, ["model-0.tar.gz"])
        endpoint.publish(cpu, ["model-0-cpu.tar.gz"])
        if on_gpu:
            _say("measuring the torch host's CUDA context (a model with almost no weights)")
            empty = bert_archive(scratch / "empty.tar.gz", traced_bert(EMPTY_SHAPE), EMPTY_SHAPE,
                                 "KIND_GPU")  # fmt: skip
            endpoint.publish(empty, ["empty.tar.gz"])
            context = cold_and_memory(endpoint, "empty.tar.gz", request_body(4, 8), on_gpu)
        _say("cold load of model-0")
        cold = cold_and_memory(endpoint, "model-0.tar.gz", body, on_gpu)
        steps.append(cold)
        if on_gpu:
            memory = Step(MEMORY_STEP)
            # The first GPU model of the host brought its one CUDA context; this one adds only
            # what it holds itself, so NVML's growth of the host process is the model's cost.
            per_model = int(cold.values.get("host_gpu_added_mib", 0))
            ctx = int(context.values.get("host_gpu_mib", 0))
            memory.values.update(
                per_model_mib=per_model, tensors_mib=int(cold.values.get("model_tensors_mib", 0)),
                host_cuda_context_mib=ctx, gpu_processes=int(cold.values.get("gpu_processes", 0)),
                aws_published_mb=AWS_BERT_BASE_MB,
                ratio_to_aws=round(per_model * MiB / (AWS_BERT_BASE_MB * 1e6), 2),
            )  # fmt: skip
            if memory.values["gpu_processes"] != 1:
                memory.notes.append("expected one process on the GPU: the torch host")
            steps.append(memory)
        else:
            steps.append(skipped(MEMORY_STEP, no_gpu))
        _say(f"warm latency: {warm_calls} calls")
        if on_gpu:
            steps.append(warm_latency(endpoint, "model-0.tar.gz", body, warm_calls, "GPU"))
        else:
            steps.append(skipped("warm latency, GPU", no_gpu))
        steps.append(warm_latency(endpoint, "model-0-cpu.tar.gz", body, warm_calls // 2, "CPU"))
    return steps


def _budget(scratch: Path, main: Path, body: bytes, budget_gib: float, steps: list[Step]) -> Step:
    per_model = max(
        (int(s.values.get("per_model_mib", 0)) for s in steps), default=0
    ) * MiB or GiB  # fmt: skip
    context = max((int(s.values.get("host_cuda_context_mib", 0)) for s in steps), default=0) * MiB
    used = sum(gpu_apps().values())
    budget = int(budget_gib * GiB)
    # One CUDA context (the torch host's) for all the copies, then their weights.
    fits = max(0, (budget - used - context) // per_model)
    names = [f"copy-{i}.tar.gz" for i in range(fits + 3)]
    _say(f"GPU budget {budget_gib} GiB: about {fits} copies should fit; loading {len(names)}")
    with _emulator(scratch, "budget", gpu_memory_limit_bytes=budget) as running:
        endpoint = Endpoint(running)
        endpoint.publish(main, names)
        step = budget_eviction(endpoint, names, body, budget)
    step.values["predicted_fit"] = fits
    return step


def _oom(scratch: Path, main: Path, body: bytes) -> Step:
    import torch

    free, _ = torch.cuda.mem_get_info()
    # Leave room for two CUDA contexts (the hog's own stub, and the torch host's, created by
    # its first GPU model) but not for the model's weights.
    hog_bytes = max(0, free - 2 * 600 * MiB - 200 * MiB)
    hog = hog_archive(scratch / "hog.tar.gz", hog_bytes)
    _say(f"filling the GPU with {hog_bytes / GiB:.1f} GiB, then loading a model")
    with _emulator(scratch, "oom", gpu_memory_limit_bytes=1 << 50) as running:
        endpoint = Endpoint(running)
        endpoint.publish(hog, ["hog.tar.gz"])
        endpoint.publish(main, ["model-oom.tar.gz"])
        step = out_of_memory(endpoint, "model-oom.tar.gz", body, "hog.tar.gz")
    step.values["hog_gib"] = round(hog_bytes / GiB, 1)
    return step


def _workload(
    scratch: Path, kind: str, on_gpu: bool, args: argparse.Namespace, deadline: float
) -> Step:
    targets = args.targets or (200 if on_gpu else 8)
    concurrency = args.concurrency or (8 if on_gpu else 2)
    archive = bert_archive(scratch / "small.tar.gz", traced_bert(WORKLOAD_SHAPE), WORKLOAD_SHAPE,
                           kind)  # fmt: skip
    names = [f"tenant-{i:03d}.tar.gz" for i in range(targets)]
    # On a GPU every copy fits at once (one CUDA context, small weights): no evictions are
    # expected there; on CPU a small capacity keeps the rehearsal short and exercises LRU.
    capacity = None if on_gpu else 3
    _say(f"workload: {targets} TargetModels, at most {capacity or 'all'} loaded, "
         f"{concurrency} at a time")  # fmt: skip
    with _emulator(
        scratch, "workload", max_loaded_models=capacity,
        gpu_memory_limit_bytes=int(args.gpu_budget_gib * GiB),
    ) as running:  # fmt: skip
        endpoint = Endpoint(running)
        endpoint.publish(archive, names)
        body = request_body(32, WORKLOAD_SHAPE.vocab)
        step = workload(endpoint, names, body, args.calls, concurrency, deadline)
    step.values["max_loaded_models"] = capacity
    return step
