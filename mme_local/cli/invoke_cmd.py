"""`mme-local invoke`: one InvokeEndpoint through boto3, summarised, or failing in one line."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import httpx
import typer

from mme_local.cli.invoke_view import (
    InvokeFailed,
    body_warning,
    cold_or_warm,
    error_line,
    read_body,
    summary,
)

DEFAULT_URL = "http://127.0.0.1:8080"


def _state_of(endpoint_url: str, target_model: str) -> str | None:
    """The model's state on a local endpoint before the call (None if it can't be told)."""
    try:
        rows = httpx.get(f"{endpoint_url}/_mme/models", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    states = {row.get("target_model"): row.get("state") for row in rows if isinstance(row, dict)}
    state = states.get(target_model)
    return str(state) if state is not None else None


def invoke(
    target_model: Annotated[str, typer.Argument(help="The TargetModel, e.g. model-0.tar.gz.")],
    body: Annotated[
        str, typer.Option(help="The payload as text, or @FILE to send a file's contents.")
    ],
    content_type: Annotated[str, typer.Option(help="Content-Type.")] = "application/octet-stream",
    accept: Annotated[str | None, typer.Option(help="Accept.")] = None,
    endpoint_name: Annotated[str, typer.Option(help="EndpointName.")] = "local-mme",
    endpoint_url: Annotated[
        str,
        typer.Option(
            "--endpoint-url",
            envvar="MME_LOCAL_ENDPOINT_URL",
            help="The local endpoint's gateway URL.",
        ),
    ] = DEFAULT_URL,
    cloud: Annotated[
        bool, typer.Option("--cloud", help="Invoke the real SageMaker endpoint instead.")
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(
            help="AWS region (with --cloud; else AWS_REGION, AWS_DEFAULT_REGION, the profile's)."
        ),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (with --cloud).")] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the response body as it came, nothing else.")
    ] = False,
) -> None:
    """Send one InvokeEndpoint request through boto3 and summarise the answer.

    Prints each output's name, datatype, shape and first values, the latency and whether the
    model was already loaded; --raw prints the body instead. A failure is one line, exit 1.
    """
    warning = body_warning(body)
    if warning is not None:
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    kwargs: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "TargetModel": target_model,
        "Body": read_body(body),
        "ContentType": content_type,
    }
    if accept:
        kwargs["Accept"] = accept
    local_url = None if cloud else endpoint_url
    before = None if cloud or raw else _state_of(endpoint_url, target_model)
    try:
        if cloud:
            from cloud.invoke import runtime_client

            client = runtime_client(region, profile)
        else:
            from mme_local.clients import local_runtime_client

            client = local_runtime_client(endpoint_url, region or "us-east-1")
        started = time.perf_counter()
        response = client.invoke_endpoint(**kwargs)
        payload = response["Body"].read()
        latency_ms = 1000 * (time.perf_counter() - started)
    except Exception as error:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(error, (BotoCoreError, ClientError)):
            raise
        raise InvokeFailed(error_line(error, local_url, region)) from None
    if raw:
        sys.stdout.buffer.write(payload + b"\n")
        return
    content = str(response.get("ContentType", ""))
    for line in summary(payload, content):
        typer.echo(line)
    warmth = cold_or_warm(before)
    details = [
        f"{latency_ms:,.1f} ms",
        *([warmth] if warmth else []),
        content,
        f"variant {response.get('InvokedProductionVariant')}",
        f"request {response['ResponseMetadata'].get('RequestId')}",
    ]
    typer.secho("  ".join(details), dim=True, err=True)
