"""`up`, `invoke`, `models` and `stats`: run a local endpoint and look at it."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from mme_local.config_file import load_config
from mme_local.runtime.base import TritonSettings
from mme_local.settings import DEFAULT_MODEL_DATA_URL, EmulatorSettings

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}

DEFAULT_URL = "http://127.0.0.1:8080"
EndpointUrl = Annotated[
    str, typer.Option("--endpoint-url", help="The local endpoint's gateway URL.")
]


def parse_size(text: str) -> int:
    """'16GiB', '512MiB', '2G', '1000000' -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a size (examples: 16GiB, 512MiB, 2G)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1000
    exponent = "KMGT".find(unit[:1]) + 1 if unit[:1] in "KMGT" and unit else 0
    return int(number * base**exponent)


def _size_or_none(text: str | None) -> int | None:
    return parse_size(text) if text else None


def _table_console() -> Console:
    """Tables go to stdout; piped, they keep full TargetModel names instead of 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 240)


def _console() -> Console:
    return Console(stderr=True, highlight=False)


def _banner(url: str, endpoint: str, s3_url: str | None, model_data: str, triton: str) -> str:
    return f"""\
mme-local endpoint '{endpoint}' is up
  InvokeEndpoint  {url}/endpoints/{endpoint}/invocations
  S3 store        {s3_url or "AWS S3"}  (models under {model_data})
  Triton          {triton}
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
        str, typer.Option(help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Gateway port [default: 8080].")] = None,
    endpoint_name: Annotated[str | None, typer.Option(help="EndpointName clients use.")] = None,
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
    gpus: Annotated[str, typer.Option(help="For --runtime docker: all, 0,1 or none.")] = "all",
    pull: Annotated[
        bool, typer.Option(help="For --runtime docker: pull the image if it is missing.")
    ] = False,
    instance_type: Annotated[
        str | None, typer.Option(help="Sets the default memory budget (e.g. ml.g5.xlarge).")
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
        float, typer.Option(help="Seconds a cold request waits before a 429.")
    ] = 60.0,
    model_cache: Annotated[
        str | None, typer.Option(help="Enabled, or Disabled to unload after every call.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="An mme.toml to read (default: ./mme.toml if present).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
) -> None:
    """Start the embedded S3, Triton and the SageMaker Runtime gateway; Ctrl-C stops all."""
    import uvicorn
    import uvloop

    from mme_local.emulator import Emulator, uvicorn_config
    from mme_local.gateway.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    file_config = load_config(config)
    shared, local = file_config.get("endpoint", {}), file_config.get("local", {})
    settings = EmulatorSettings(
        host=host,
        port=port if port is not None else local.get("port", 8080),
        endpoint_name=endpoint_name or shared.get("name", "local-mme"),
        model_data_url=model_data_url or shared.get("model_data_url", DEFAULT_MODEL_DATA_URL),
        s3_endpoint_url=s3_endpoint or local.get("s3_endpoint_url"),
        models_dir=models or shared.get("artifacts"),
        cache_dir=cache_dir or local.get("cache_dir"),
        runtime=runtime or local.get("runtime", "embedded"),
        triton_home=triton_home,
        triton=TritonSettings(),
        docker_gpus=gpus,
        instance_type=instance_type or shared.get("instance_type", "ml.g5.xlarge"),
        region=shared.get("region", "us-east-1"),
        max_loaded_models=max_loaded_models or local.get("max_loaded_models"),
        memory_limit_bytes=_size_or_none(memory_limit or local.get("memory_limit")),
        disk_limit_bytes=_size_or_none(disk_limit or local.get("disk_limit")),
        model_ready_timeout_s=model_ready_timeout,
        model_cache=model_cache or shared.get("model_cache", "Enabled"),
    )
    if image:
        settings.docker_image = image
    console = _console()
    emulator = Emulator(
        settings,
        progress=lambda m: console.print(f"[cyan]{m}[/cyan]"),
        triton_url=triton_url,
        pull=pull,
    )
    server = uvicorn.Server(
        uvicorn_config(create_app(lambda: emulator), settings.host, settings.port, lifespan="off")
    )

    async def serve() -> None:
        try:
            await emulator.start()
            running = emulator.server
            triton = (
                f"{running.version or 'unknown version'} ({settings.runtime}) at {running.url}"
                if running
                else "-"
            )
            url = f"http://{settings.host}:{settings.port}"
            typer.echo(
                _banner(
                    url,
                    settings.endpoint_name,
                    emulator.s3_endpoint_url,
                    emulator.model_data.url(),
                    triton,
                ),
                err=True,
            )
            await server.serve()
        finally:
            await emulator.stop()
            typer.echo("stopped: gateway, Triton and the store are down", err=True)

    # uvicorn turns Ctrl-C into a graceful shutdown, then re-raises it once serving has ended.
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())


def _read_body(body: str) -> bytes:
    if body.startswith("@"):
        return Path(body[1:]).read_bytes()
    return body.encode()


def invoke(
    target_model: Annotated[str, typer.Argument(help="The TargetModel, e.g. model-0.tar.gz.")],
    body: Annotated[str, typer.Option(help="The payload, or @file to read it from a file.")],
    content_type: Annotated[str, typer.Option(help="Content-Type.")] = "application/octet-stream",
    accept: Annotated[str | None, typer.Option(help="Accept.")] = None,
    endpoint_name: Annotated[str, typer.Option(help="EndpointName.")] = "local-mme",
    endpoint_url: EndpointUrl = DEFAULT_URL,
    cloud: Annotated[
        bool, typer.Option("--cloud", help="Invoke the real SageMaker endpoint instead.")
    ] = False,
    region: Annotated[str | None, typer.Option(help="AWS region (with --cloud).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (with --cloud).")] = None,
) -> None:
    """Send one InvokeEndpoint request through boto3 and print the answer."""
    if cloud:
        from cloud.invoke import runtime_client

        client = runtime_client(region, profile)
    else:
        import boto3

        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
    kwargs: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "TargetModel": target_model,
        "Body": _read_body(body),
        "ContentType": content_type,
    }
    if accept:
        kwargs["Accept"] = accept
    response = client.invoke_endpoint(**kwargs)
    payload = response["Body"].read()
    _console().print(
        f"[dim]{response['ContentType']}  variant {response.get('InvokedProductionVariant')}  "
        f"request {response['ResponseMetadata'].get('RequestId')}[/dim]"
    )
    sys.stdout.buffer.write(payload + b"\n")


def _get_json(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=30)
    except httpx.TransportError as error:
        raise typer.BadParameter(f"no mme-local endpoint answers at {url} ({error})") from error
    response.raise_for_status()
    return response.json()


def _mib(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.1f}"


def models(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """List the prefix's models with state, size, last use and counts, least recent first."""
    rows = _get_json(f"{endpoint_url}/_mme/models")
    table = Table(title=f"models at {endpoint_url}")
    for column in (
        "TargetModel",
        "state",
        "size MiB",
        "memory MiB",
        "last used",
        "calls",
        "loads",
        "unloads",
    ):
        table.add_column(
            column,
            justify="left" if column in ("TargetModel", "state", "last used") else "right",
            no_wrap=column == "TargetModel",
        )
    for row in rows:
        table.add_row(
            row["target_model"],
            row["state"],
            _mib(row["size_bytes"]),
            _mib(row["memory_bytes"]),
            row["last_used"] or "-",
            str(row["invocations"]),
            str(row["loads"]),
            str(row["unloads"]),
        )
    _table_console().print(table)


def stats(endpoint_url: EndpointUrl = DEFAULT_URL) -> None:
    """Show the endpoint's CloudWatch-named metrics as a table."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{endpoint_url}/metrics", timeout=30).text
    except httpx.TransportError as error:
        raise typer.BadParameter(
            f"no mme-local endpoint answers at {endpoint_url} ({error})"
        ) from error
    table = Table(title=f"metrics at {endpoint_url}")
    for column in ("metric", "count / value", "mean", "total"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("mme_"):
            continue
        values = {
            s.name: s.value for s in family.samples if not s.labels or family.type != "histogram"
        }
        if family.type == "histogram":
            count = values.get(f"{family.name}_count", 0.0)
            total = values.get(f"{family.name}_sum", 0.0)
            mean = f"{1000 * total / count:,.2f} ms" if count else "-"
            table.add_row(family.name, f"{count:,.0f}", mean, f"{total:,.3f} s")
        else:
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                label = ",".join(f"{k}={v}" for k, v in sample.labels.items())
                name = f"{sample.name}{{{label}}}" if label else sample.name
                table.add_row(name, f"{sample.value:,.0f}", "", "")
    _table_console().print(table)
