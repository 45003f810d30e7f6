"""`mme-local up`: run a local endpoint until Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

# Flags whose names differ from the settings field they fill (for messages).
FLAG_NAMES = {
    "s3_endpoint_url": "--s3-endpoint",
    "models_dir": "--models",
    "docker_image": "--image",
    "docker_gpus": "--gpus",
    "trace_file": "--trace",
}


def example_request(models_dir: Path | None) -> tuple[str, str]:
    """A TargetModel the user published and a Python expression for a body it accepts.

    The body is the folder's request.json (what `mme-local package` writes) if there is one,
    else zeros shaped by the first archive's config, so the banner's snippet runs as printed.
    """
    archives = sorted(models_dir.glob("*.tar.gz")) if models_dir and models_dir.is_dir() else []
    if not archives:
        return "model-0.tar.gz", "b'...'  # the model's request body"
    target = archives[0].name
    request = archives[0].parent / "request.json"
    if request.is_file():
        return target, f'open("{request.resolve()}", "rb").read()'
    from cloud.errors import CloudError
    from cloud.invoke import zeros_request

    try:
        body = zeros_request(archives[0])
    except (CloudError, OSError, ValueError):
        return target, "b'...'  # the model's request body"
    if len(body) > 400:
        return target, "b'...'  # the model's request body (see its config.pbtxt)"
    return target, repr(body)


def _banner(
    url: str,
    endpoint: str,
    s3_url: str | None,
    model_data: str,
    triton: str,
    example: tuple[str, str],
    title: str = "Triton",
    instances: int = 1,
) -> str:
    target, body = example
    live = f"{url}/_mme/"
    if instances > 1:
        live += f"  (one instance at a time: {url}/_mme/?instance=1 shows the second)"
    return f"""\
mme-local endpoint '{endpoint}' is up
  InvokeEndpoint  {url}/endpoints/{endpoint}/invocations
  S3 store        {s3_url or "AWS S3"}  (models under {model_data})
  {title:<15} {triton}
  Live page       {live}
  Metrics         {url}/metrics     Models: mme-local models --endpoint-url {url}

  import boto3
  runtime = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")
  body = {body}
  response = runtime.invoke_endpoint(EndpointName="{endpoint}", TargetModel="{target}",
                                     ContentType="application/json", Body=body)
  print(response["Body"].read())

Press Ctrl-C to stop."""


def _default(field: str) -> str:
    """A settings field's default as `--help` shows it (kept in one place: the model)."""
    from mme_local.settings import EmulatorSettings

    value = EmulatorSettings.model_fields[field].default
    if field.endswith("_bytes") and isinstance(value, int):
        units = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
        return next((f"{value // n}{u}" for n, u in units if value % n == 0), str(value))
    return str(value)


LOG_LEVELS = ("debug", "info", "warning", "error")


def up(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address the gateway listens on (loopback unless told otherwise).",
            show_default=_default("host"),
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Gateway port; 0 picks a free one.", show_default=_default("port")),
    ] = None,
    endpoint_name: Annotated[
        str | None,
        typer.Option(help="EndpointName clients use.", show_default=_default("endpoint_name")),
    ] = None,
    model_data_url: Annotated[
        str | None,
        typer.Option(
            help="S3 prefix of the model.tar.gz objects (ModelDataUrl).",
            show_default=_default("model_data_url"),
        ),
    ] = None,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(
            "--s3-endpoint",
            "--s3-endpoint-url",
            help="An external S3 API (MinIO, AWS, a moto server) instead of the embedded one.",
            show_default="embedded moto server on loopback",
        ),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(help="Publish every *.tar.gz in this folder under the prefix at start."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where artifacts are extracted.", show_default="a temporary folder removed at exit"
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(
            help="The serving stack: triton or torchserve.", show_default=_default("stack")
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="embedded (the tritonserver binary), docker (NVIDIA's image) or external "
            "(--triton-url).",
            show_default=_default("runtime"),
        ),
    ] = None,
    triton_home: Annotated[
        Path | None,
        typer.Option(
            help="Triton install to use (also $MME_LOCAL_TRITON_HOME).",
            show_default="tritonserver on PATH, else the provisioned copy",
        ),
    ] = None,
    triton_url: Annotated[
        str | None, typer.Option(help="With --runtime external: Triton's SageMaker URL.")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="With --runtime docker: the image.", show_default=_default("docker_image")
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            help="With --runtime docker: all, a list such as 0,1, or none.",
            show_default=_default("docker_gpus"),
        ),
    ] = None,
    pull: Annotated[
        bool | None,
        typer.Option(
            help="With --runtime docker: pull the image if it is missing.", show_default="no"
        ),
    ] = None,
    instance_type: Annotated[
        str | None,
        typer.Option(
            help="The instance type whose host memory, GPU memory, vCPUs and disk set the "
            "default budgets.",
            show_default=_default("instance_type"),
        ),
    ] = None,
    instance_count: Annotated[
        int | None,
        typer.Option(
            help="Instances behind the endpoint (at most 4, embedded Triton): each its own "
            "Triton, cache folder and budgets; the gateway routes among them.",
            show_default=_default("instance_count"),
        ),
    ] = None,
    max_loaded_models: Annotated[
        int | None,
        typer.Option(
            help="Most models loaded at once (per instance).", show_default="no limit but memory"
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="Host memory budget for Triton and its stubs, e.g. 8GiB.",
            show_default="the instance type's host memory",
        ),
    ] = None,
    disk_limit: Annotated[
        str | None,
        typer.Option(
            help="Disk budget for extracted artifacts, e.g. 20GiB.",
            show_default="the instance type's NVMe storage",
        ),
    ] = None,
    model_ready_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a cold request waits before ModelNotReadyException (429).",
            show_default=_default("model_ready_timeout_s"),
        ),
    ] = None,
    model_cache: Annotated[
        str | None,
        typer.Option(
            help="Enabled, or Disabled to unload after every call.",
            show_default=_default("model_cache"),
        ),
    ] = None,
    header_limit: Annotated[
        str | None,
        typer.Option(
            help="Largest request line plus headers; more gets 431.",
            show_default=_default("header_limit_bytes"),
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            help="Most requests in progress; more get 503.",
            show_default=_default("max_concurrency"),
        ),
    ] = None,
    keep_alive_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds an idle kept-alive connection stays open.",
            show_default=_default("keep_alive_timeout_s"),
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds a request's headers may take, or its body pause.",
            show_default=_default("header_timeout_s"),
        ),
    ] = None,
    require_sigv4: Annotated[
        bool | None,
        typer.Option(
            help="Refuse InvokeEndpoint unless SigV4-signed with --access-key-id and "
            "$MME_LOCAL_SECRET_ACCESS_KEY.",
            show_default="no",
        ),
    ] = None,
    access_key_id: Annotated[
        str | None,
        typer.Option(
            help="The access key id --require-sigv4 expects.",
            show_default=_default("access_key_id"),
        ),
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option("--overwrite", help="With --models: replace objects whose content changed."),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(help="Append one JSON line per invocation here (for `capacity plan`)."),
    ] = None,
    triton_version: Annotated[
        str | None,
        typer.Option(
            help="The SageMaker Triton container release to imitate: the one `deploy` uses "
            "(triton_version in mme.toml's deploy section).",
            show_default=_default("triton_version"),
        ),
    ] = None,
    unload_blocks_invokes: Annotated[
        str | None,
        typer.Option(
            help="Make every invocation wait while a model unloads, as Triton 25.11 and later "
            "do: auto (when --triton-version is one of them), on or off.",
            show_default=_default("unload_blocks_invokes"),
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="An mme.toml to read.", show_default="./mme.toml if present"),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            help="How much the console shows: debug, info (loads, evictions, failed loads), "
            "warning or error."
        ),
    ] = "info",
) -> None:
    """Start the embedded S3, Triton and the SageMaker Runtime gateway; Ctrl-C stops all.

    Every setting can also come from mme.toml or an MME_LOCAL_* environment variable; flags win.
    """
    import uvloop

    from mme_local.cli.up_checks import check_gateway_port, check_models_folder
    from mme_local.config_file import SettingsError, load_settings, setting_source
    from mme_local.emulator import Emulator
    from mme_local.runtime.factory import server_title
    from mme_local.serving import EmulatorServer
    from mme_local.settings import EmulatorSettings

    if log_level.lower() not in LOG_LEVELS:
        raise SettingsError(
            f"--log-level: {log_level!r} is not a level; choose one of: {', '.join(LOG_LEVELS)}"
        )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    flags = {
        "host": host,
        "port": port,
        "endpoint_name": endpoint_name,
        "model_data_url": model_data_url,
        "s3_endpoint_url": s3_endpoint,
        "models_dir": models,
        "overwrite": overwrite,
        "cache_dir": cache_dir,
        "stack": stack,
        "runtime": runtime,
        "triton_home": triton_home,
        "triton_url": triton_url,
        "docker_image": image,
        "docker_gpus": gpus,
        "pull": pull,
        "instance_type": instance_type,
        "instance_count": instance_count,
        "max_loaded_models": max_loaded_models,
        "memory_limit_bytes": memory_limit,
        "disk_limit_bytes": disk_limit,
        "model_ready_timeout_s": model_ready_timeout,
        "model_cache": model_cache,
        "header_limit_bytes": header_limit,
        "max_concurrency": max_concurrency,
        "keep_alive_timeout_s": keep_alive_timeout,
        "header_timeout_s": header_timeout,
        "require_sigv4": require_sigv4,
        "access_key_id": access_key_id,
        "trace_file": trace,
        "triton_version": triton_version,
        "unload_blocks_invokes": unload_blocks_invokes,
    }
    settings = load_settings(EmulatorSettings, flags, config, os.environ, FLAG_NAMES)

    def source(field: str) -> str:
        return setting_source(EmulatorSettings, field, flags, os.environ, config, FLAG_NAMES)

    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    # Everything that would stop `up` is checked before the store, Triton or the gateway start.
    warnings = check_models_folder(settings.models_dir, source("models_dir"))
    check_gateway_port(settings.host, settings.port, source("port"), source("host"))
    for warning in warnings:
        console.print(warning, style="yellow", markup=False)
    example = example_request(settings.models_dir)

    def ready(emulator: Emulator) -> None:
        running = emulator.server
        triton = (
            f"{running.version or 'unknown version'} ({settings.runtime}) at {running.url}"
            if running
            else "-"
        )
        if len(emulator.instances) > 1:
            urls = ", ".join(member.server.url for member in emulator.instances)
            triton = f"{len(emulator.instances)} instances, {triton.split(' at ')[0]} at {urls}"
        banner = _banner(
            f"http://{settings.host}:{settings.port}",
            settings.endpoint_name,
            emulator.s3_endpoint_url,
            emulator.model_data.url(),
            triton,
            example,
            server_title(settings),
            len(emulator.instances),
        )
        typer.echo(banner, err=True)

    server = EmulatorServer(
        settings,
        progress=lambda m: console.print(m, style="cyan", markup=False),
        on_ready=ready,
    )

    def say(message: str) -> None:
        typer.echo(message, err=True)

    # uvicorn turns Ctrl-C into a graceful shutdown, then re-raises it once serving has ended;
    # SIGTERM and SIGHUP take the same path.
    with contextlib.suppress(KeyboardInterrupt), server.stopping_on_signals(say):
        try:
            uvloop.run(server.serve())
        finally:
            say(f"stopped: gateway, {server_title(settings)} and the store are down")
