"""`mme-local capacity`: measure footprints, then predict hits, cold starts and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mme_local.capacity.errors import CapacityError

app = typer.Typer(
    help="Predict whether your models will thrash, before you deploy.", no_args_is_help=True
)


@app.command("profile")
def profile(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="A folder of *.tar.gz (default: the S3 prefix).", exists=True, file_okay=False
        ),
    ] = None,
    model_data_url: Annotated[
        str | None, typer.Option(help="S3 prefix of the artifacts, with --s3-endpoint or AWS.")
    ] = None,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(
            "--s3-endpoint",
            "--s3-endpoint-url",
            help="The S3 API holding the prefix.",
            show_default="AWS",
        ),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            help="A request body every model accepts: warm latency.", exists=True, dir_okay=False
        ),
    ] = None,
    content_type: Annotated[
        str, typer.Option(help="Content type of the sample.")
    ] = "application/octet-stream",
    repeats: Annotated[int, typer.Option(help="Times the sample is sent to each model.")] = 5,
    stack: Annotated[
        str | None,
        typer.Option(help="The serving stack: triton (default) or torchserve (embedded only)."),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="embedded (default) or docker (real libtorch).")
    ] = None,
    triton_home: Annotated[Path | None, typer.Option(help="Triton install to use.")] = None,
    image: Annotated[str | None, typer.Option(help="For --runtime docker: the image.")] = None,
    gpus: Annotated[
        str | None, typer.Option(help="For --runtime docker: all, 0,1 or none.")
    ] = None,
    out: Annotated[Path, typer.Option(help="The profile file to write.")] = Path("profile.json"),
    config: Annotated[
        Path | None, typer.Option(help="An mme.toml to read (default: ./mme.toml if present).")
    ] = None,
) -> None:
    """Load each distinct artifact once and record its size, times and memory."""
    import os

    from mme_local.capacity.api import profile_artifacts
    from mme_local.capacity.profiler import Sample
    from mme_local.cli.up_cmd import FLAG_NAMES
    from mme_local.config_file import load_settings
    from mme_local.settings import DEFAULT_MODEL_DATA_URL, EmulatorSettings

    flags = {
        "model_data_url": model_data_url,
        "s3_endpoint_url": s3_endpoint,
        "stack": stack,
        "runtime": runtime,
        "triton_home": triton_home,
        "docker_image": image,
        "docker_gpus": gpus,
    }
    settings = load_settings(EmulatorSettings, flags, config, os.environ, FLAG_NAMES)
    if folder is None and settings.model_data_url == DEFAULT_MODEL_DATA_URL:
        raise CapacityError("give a FOLDER of *.tar.gz or --model-data-url s3://...")
    body = None if sample is None else Sample(sample.read_bytes(), content_type, repeats)
    result = profile_artifacts(settings, folder, body, lambda m: typer.echo(m, err=True))
    result.save(out)
    from mme_local.cli.capacity_view import profile_lines

    for line in profile_lines(result):
        typer.echo(line)
    # A TorchServe worker is as real in the cloud as here: its cost stays in each footprint.
    cost = "worker cost (not subtracted)" if result.stack == "torchserve" else "stub cost"
    typer.echo(
        f"\nwrote {out}: {len(result.artifacts)} distinct artifact(s); {cost} "
        f"{result.stub_host_bytes >> 20} MiB host ({result.stack}, {result.runtime} runtime)"
    )


@app.command("plan")
def plan(
    profile: Annotated[Path, typer.Option(help="The file `capacity profile` wrote.")],
    trace: Annotated[Path | None, typer.Option(help="A trace recorded with `up --trace`.")] = None,
    models: Annotated[int | None, typer.Option(help="Synthetic: number of models.")] = None,
    requests: Annotated[int, typer.Option(help="Synthetic: number of requests.")] = 10_000,
    zipf: Annotated[float, typer.Option(help="Synthetic: Zipf popularity exponent.")] = 1.0,
    uniform: Annotated[bool, typer.Option(help="Synthetic: every model equally popular.")] = False,
    rate: Annotated[float, typer.Option(help="Synthetic: requests per second.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Synthetic: random seed.")] = 0,
    artifact: Annotated[
        str | None, typer.Option(help="Synthetic: the profiled artifact every model copies.")
    ] = None,
    instances: Annotated[
        str | None, typer.Option(help="Candidate types, e.g. ml.g4dn.xlarge,ml.g5.xlarge.")
    ] = None,
    count: Annotated[
        str,
        typer.Option(
            help="Instance counts: 1, 1..3 or 1,2,4 (with the emulator's budgets: the "
            "recorded run's --instance-count)."
        ),
    ] = "1",
    max_loaded_models: Annotated[
        int | None, typer.Option(help="Replay under the emulator's count budget.")
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option(help="Replay under the emulator's memory budget, e.g. 8GiB.")
    ] = None,
    disk_limit: Annotated[
        str | None, typer.Option(help="Replay under the emulator's disk budget.")
    ] = None,
    model_cache: Annotated[str, typer.Option(help="Enabled, or Disabled.")] = "Enabled",
    model_ready_timeout: Annotated[
        float, typer.Option(help="Seconds a cold request waits before a 429.")
    ] = 60.0,
    parallel_loads: Annotated[
        int | None, typer.Option(help="Loads at once per instance.", show_default="its vCPUs")
    ] = None,
    parallel_downloads: Annotated[
        int | None, typer.Option(help="Downloads at once per instance.", show_default="its vCPUs")
    ] = None,
    target_hit_ratio: Annotated[float | None, typer.Option(help="e.g. 0.95.")] = None,
    target_p99: Annotated[
        float | None, typer.Option(help="Most added latency at p99, in seconds.")
    ] = None,
    max_failed_share: Annotated[
        float,
        typer.Option(help="Most requests answered 429 or with an error, as a share (0.001: 0.1%)."),
    ] = 0.001,
    include_warmup: Annotated[
        bool, typer.Option(help="Judge on the whole run, not on the steady state after warm-up.")
    ] = False,
    host_reserve: Annotated[
        str,
        typer.Option(help="Host memory kept for the OS, SageMaker's agents and the container."),
    ] = "2GiB",
    gpu_baseline: Annotated[
        str,
        typer.Option(help="GPU memory not for models (CUDA, backend), where not profiled."),
    ] = "2.9G",
    gpu_workspace: Annotated[
        str,
        typer.Option(
            help="GPU memory per model beyond its parameters, where not measured: a share "
            "(15%) or a size (64MiB)."
        ),
    ] = "15%",
    busy_queue: Annotated[
        int,
        typer.Option(
            help="Requests queued for a model that make it busy: the next goes to another "
            "instance (with --count above 1)."
        ),
    ] = 4,
    triton_version: Annotated[
        str,
        typer.Option(
            help="The Triton container the endpoint runs (25.11 and later: unloads block "
            "every invocation)."
        ),
    ] = "24.09",
    front_end_stall: Annotated[
        float,
        typer.Option(
            help="Share of requests arriving during a load or unload that wait for it (0 to 1).",
            show_default="6/7, as measured locally",
        ),
    ] = 6 / 7,
    host_share: Annotated[
        str,
        typer.Option(help="Host memory per KIND_GPU model, where not measured on a GPU."),
    ] = "10MiB",
    prices: Annotated[Path | None, typer.Option(help="A price table overriding ours.")] = None,
    format: Annotated[str, typer.Option(help="table, json or markdown.")] = "table",
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the plan (matplotlib).")] = None,
    html: Annotated[
        Path | None,
        typer.Option(help="Write a self-contained page: candidates, the chosen one's timeline."),
    ] = None,
) -> None:
    """Predict hit ratio, cold starts, latency and cost per candidate; pick the cheapest."""
    from mme_local.capacity.api import EmulatorBudgets, PlanRequest, make_plan
    from mme_local.capacity.memory_model import Allowances
    from mme_local.capacity.plan import Parallelism, Targets, parse_counts
    from mme_local.capacity.report import RENDERERS
    from mme_local.capacity.workload import SyntheticSpec
    from mme_local.settings import InvalidSize, parse_size

    if format not in RENDERERS:
        raise CapacityError(f"--format must be one of {', '.join(RENDERERS)}")
    if model_cache not in ("Enabled", "Disabled"):
        raise CapacityError("--model-cache must be Enabled or Disabled")

    def size(flag: str, text: str | None) -> int | None:
        try:
            return None if text is None else parse_size(text)
        except InvalidSize as error:
            raise CapacityError(f"{flag}: {error}") from None

    memory = size("--memory-limit", memory_limit)
    disk = size("--disk-limit", disk_limit)
    if not 0 <= front_end_stall <= 1:
        raise CapacityError("--front-end-stall must be a share between 0 and 1")
    if busy_queue < 1:
        raise CapacityError("--busy-queue must be 1 or more")
    if not 0 <= max_failed_share <= 1:
        raise CapacityError("--max-failed-share must be a share between 0 and 1, e.g. 0.001")

    def allowance(flag: str, text: str) -> int:
        value = size(flag, text)
        assert value is not None
        return value

    if gpu_workspace.endswith("%"):
        try:
            share, fixed = float(gpu_workspace[:-1]) / 100, 0
        except ValueError:
            raise CapacityError(f"--gpu-workspace {gpu_workspace!r}: give 15% or 64MiB") from None
    else:
        share, fixed = 0.0, allowance("--gpu-workspace", gpu_workspace)
    allowances = Allowances(
        host_share_bytes=allowance("--host-share", host_share),
        gpu_workspace_share=share,
        gpu_workspace_bytes=fixed,
        host_reserve_bytes=allowance("--host-reserve", host_reserve),
        gpu_baseline_bytes=allowance("--gpu-baseline", gpu_baseline),
    )
    spec = None
    if models is not None:
        spec = SyntheticSpec(models, requests, None if uniform else zipf, rate, seed, artifact)
    request = PlanRequest(
        profile=profile,
        trace=trace,
        spec=spec,
        instances=[n.strip() for n in instances.split(",") if n.strip()] if instances else None,
        counts=tuple(parse_counts(count)),
        budgets=EmulatorBudgets(max_loaded_models, memory, disk),
        targets=Targets(target_hit_ratio, target_p99, max_failed_share, include_warmup),
        prices=prices,
        parallel=Parallelism(parallel_downloads, parallel_loads),
        ready_timeout_s=model_ready_timeout,
        cache_enabled=model_cache == "Enabled",
        allowances=allowances,
        busy_queue=busy_queue,
        triton_version=triton_version,
        stall_share=front_end_stall,
    )
    result = make_plan(request)
    rendered = RENDERERS[format](result)
    if format != "json":
        from mme_local.cli.capacity_view import with_verdict

        rendered = with_verdict(rendered, result)
    typer.echo(rendered, nl=False)
    if plot is not None:
        from mme_local.capacity.plot import write_plot

        write_plot(result, plot)
        typer.echo(f"wrote {plot}", err=True)
    if html is not None:
        from mme_local.capacity.api import workload_for
        from mme_local.capacity.html_report import write_html
        from mme_local.capacity.profile import load_profile

        loaded = load_profile(request.profile)
        write_html(result, workload_for(request, loaded), loaded, html)
        typer.echo(f"wrote {html}", err=True)
