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


def _banner(
    url: str,
    endpoint: str,
    s3_url: str | None,
    model_data: str,
    triton: str,
    title: str = "Triton",
) -> str:
    return f"""\
mme-local endpoint '{endpoint}' is up
  InvokeEndpoint  {url}/endpoints/{endpoint}/invocations
  S3 store        {s3_url or "AWS S3"}  (models under {model_data})
  {title:<15} {triton}
  Metrics         {url}/metrics     Models: mme-local models --endpoint-url {url}

  import boto3
  runtime = boto3.client("sagemaker-runtime", endpoint_url="{url}", region_name="us-east-1",
                         aws_access_key_id="local", aws_secret_access_key="local")
  response = runtime.invoke_endpoint(EndpointName="{endpoint}", TargetModel="model-0.tar.gz",
                                     ContentType="application/octet-stream", Body=payload)
  print(response["Body"].read())

Press Ctrl-C to stop."""


def up(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1, loopback].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port [default: 8080].")] = None,
    endpoint_name: Annotated[
        str | None, typer.Option(help="EndpointName clients use [default: local-mme].")
    ] = None,
    model_data_url: Annotated[
        str | None, typer.Option(help="S3 prefix of the model.tar.gz objects (ModelDataUrl).")
    ] = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="An external S3 API (MinIO, AWS, moto); default: embedded.")
    ] = None,
    models: Annotated[
        Path | None, typer.Option(help="Publish every *.tar.gz in this folder at start.")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where artifacts are extracted (default: a temp folder).")
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(help="The serving stack: triton or torchserve [default: triton]."),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            help="embedded (tritonserver binary), docker, or external [default: embedded]."
        ),
    ] = None,
    triton_home: Annotated[Path | None, typer.Option(help="Triton install to use.")] = None,
    triton_url: Annotated[
        str | None, typer.Option(help="For --runtime external: the Triton SageMaker URL.")
    ] = None,
    image: Annotated[str | None, typer.Option(help="For --runtime docker: the image.")] = None,
    gpus: Annotated[
        str | None, typer.Option(help="For --runtime docker: all, 0,1 or none [default: all].")
    ] = None,
    pull: Annotated[
        bool | None, typer.Option(help="For --runtime docker: pull the image if it is missing.")
    ] = None,
    instance_type: Annotated[
        str | None,
        typer.Option(help="Sets the default budgets [default: ml.g5.xlarge]."),
    ] = None,
    max_loaded_models: Annotated[
        int | None, typer.Option(help="Most models loaded at once.")
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option(help="Host memory budget for Triton, e.g. 8GiB.")
    ] = None,
    disk_limit: Annotated[
        str | None, typer.Option(help="Disk budget for extracted artifacts, e.g. 20GiB.")
    ] = None,
    model_ready_timeout: Annotated[
        float | None, typer.Option(help="Seconds a cold request waits before a 429 [default: 60].")
    ] = None,
    model_cache: Annotated[
        str | None, typer.Option(help="Enabled, or Disabled to unload after every call.")
    ] = None,
    header_limit: Annotated[
        str | None, typer.Option(help="Largest request headers; more gets 431 [default: 64KiB].")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Most open connections; more get 503 [default: 1000].")
    ] = None,
    keep_alive_timeout: Annotated[
        float | None, typer.Option(help="Seconds an idle connection stays open [default: 5].")
    ] = None,
    require_sigv4: Annotated[
        bool | None,
        typer.Option(
            help="Refuse InvokeEndpoint unless SigV4-signed with --access-key-id and "
            "$MME_LOCAL_SECRET_ACCESS_KEY."
        ),
    ] = None,
    access_key_id: Annotated[
        str | None, typer.Option(help="The access key id --require-sigv4 expects [default: local].")
    ] = None,
    overwrite: Annotated[
        bool | None,
        typer.Option("--overwrite", help="With --models: replace objects whose content changed."),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(help="Append one JSON line per invocation here (for `capacity plan`)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="An mme.toml to read (default: ./mme.toml if present).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
) -> None:
    """Start the embedded S3, Triton and the SageMaker Runtime gateway; Ctrl-C stops all.

    Every setting can also come from mme.toml or an MME_LOCAL_* environment variable; flags win.
    """
    import uvloop

    from mme_local.config_file import load_settings
    from mme_local.emulator import Emulator
    from mme_local.runtime.factory import server_title
    from mme_local.serving import EmulatorServer
    from mme_local.settings import EmulatorSettings

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
        "max_loaded_models": max_loaded_models,
        "memory_limit_bytes": memory_limit,
        "disk_limit_bytes": disk_limit,
        "model_ready_timeout_s": model_ready_timeout,
        "model_cache": model_cache,
        "header_limit_bytes": header_limit,
        "max_concurrency": max_concurrency,
        "keep_alive_timeout_s": keep_alive_timeout,
        "require_sigv4": require_sigv4,
        "access_key_id": access_key_id,
        "trace_file": trace,
    }
    settings = load_settings(EmulatorSettings, flags, config, os.environ, FLAG_NAMES)
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def ready(emulator: Emulator) -> None:
        running = emulator.server
        triton = (
            f"{running.version or 'unknown version'} ({settings.runtime}) at {running.url}"
            if running
            else "-"
        )
        banner = _banner(
            f"http://{settings.host}:{settings.port}",
            settings.endpoint_name,
            emulator.s3_endpoint_url,
            emulator.model_data.url(),
            triton,
            server_title(settings),
        )
        typer.echo(banner, err=True)

    server = EmulatorServer(
        settings, progress=lambda m: console.print(f"[cyan]{m}[/cyan]"), on_ready=ready
    )
    # uvicorn turns Ctrl-C into a graceful shutdown, then re-raises it once serving has ended.
    with contextlib.suppress(KeyboardInterrupt):
        try:
            uvloop.run(server.serve())
        finally:
            title = server_title(settings)
            typer.echo(f"stopped: gateway, {title} and the store are down", err=True)
