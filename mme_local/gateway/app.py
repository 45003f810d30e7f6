"""Routes: SageMaker Runtime's InvokeEndpoint, the SageMaker API's read calls, /ping, /metrics,
and the admin views.

Handlers only translate between HTTP and the transport-free service, control plane and views.
InvokeEndpoint (see invocations.py) and the SageMaker API (`POST /` with `X-Amz-Target:
SageMaker.<Operation>`, AWS JSON 1.1) are dispatched before the framework, and so are the
runtime's streaming and asynchronous paths, which a multi-model endpoint refuses with an AWS-shaped
`ValidationError`; everything else goes through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mme_local.gateway.admin import AdminViews
from mme_local.gateway.control_plane import (
    ControlPlane,
    ControlPlaneError,
    LocalEndpoint,
    ValidationException,
)
from mme_local.gateway.invocations import (
    endpoint_name_of,
    handle_invocations,
    other_operation_of,
    refuse_other_operation,
)
from mme_local.gateway.live_page import live_routes
from mme_local.gateway.live_views import LiveViews
from mme_local.gateway.service import EndpointService

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_mme"
TARGET_PREFIX = "SageMaker."
# Read calls carry a few names and filters; anything larger is not one of them.
MAX_CONTROL_BODY = 1024 * 1024


@dataclass(frozen=True)
class Gateway:
    """What the routes serve: InvokeEndpoint through the service, the SageMaker API's read calls
    through the control plane, the rest from the views."""

    service: EndpointService
    admin: AdminViews
    created: float = field(default_factory=time.time)
    """When the endpoint came up: the CreationTime the control plane reports."""
    live: list[LiveViews] = field(default_factory=list)
    """What the live page at /_mme/ shows, one per instance; none serves no page."""

    @cached_property
    def control(self) -> ControlPlane:
        endpoint = LocalEndpoint.from_settings(
            self.admin.settings, self.admin.model_data_url, self.created
        )
        return ControlPlane(endpoint)


def _amz_target(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-amz-target":
            target = value.decode("latin-1")
            return target if target.startswith(TARGET_PREFIX) else None
    return None


async def _json_body(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_CONTROL_BODY:
            raise ValidationException(f"The request body exceeds {MAX_CONTROL_BODY} bytes.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    try:
        params = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise ValidationException("The request body is not a JSON object.")
    return params


async def handle_control_plane(
    control: ControlPlane, target: str, receive: Receive, send: Send
) -> None:
    """One SageMaker API call in AWS JSON 1.1: the members, or `__type` and `message`."""
    operation = target[len(TARGET_PREFIX) :]
    try:
        params = await _json_body(receive)
        # The first call imports the SageMaker SDK for the image URI: seconds, off the loop.
        status, payload = 200, await asyncio.to_thread(control.handle, operation, params)
    except ControlPlaneError as error:
        status, payload = error.status, {"__type": error.code, "message": error.message}
    except Exception:
        log.exception("unexpected failure in SageMaker.%s", operation)
        status, payload = 500, {"__type": "InternalFailure", "message": "An internal error."}
    headers = [
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def create_app(gateway: Callable[[], Gateway], lifespan: Any = None) -> ASGIApp:
    """`gateway` is looked up per request so the app can exist before the emulator starts."""

    async def ping(request: Request) -> Response:
        return Response(status_code=200 if gateway().admin.healthy() else 503)

    async def metrics(request: Request) -> Response:
        return Response(gateway().admin.metrics_text(), media_type="text/plain; version=0.0.4")

    async def models(request: Request) -> Response:
        return JSONResponse(await gateway().admin.models())

    async def evictions(request: Request) -> Response:
        return JSONResponse(gateway().admin.evictions())

    async def status(request: Request) -> Response:
        return JSONResponse(await gateway().admin.status())

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/models", models, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/evictions", evictions, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/status", status, methods=["GET"]),
        *live_routes(ADMIN_PREFIX, lambda: gateway().live),
    ]
    framework = Starlette(routes=routes, lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint_name = endpoint_name_of(scope["path"])
            if endpoint_name is not None:
                await handle_invocations(gateway().service, endpoint_name, scope, receive, send)
                return
            other = other_operation_of(scope["path"])
            if other is not None:
                await refuse_other_operation(gateway().service, *other, send)
                return
            target = _amz_target(scope) if scope["path"] == "/" else None
            if target is not None:
                await handle_control_plane(gateway().control, target, receive, send)
                return
        await framework(scope, receive, send)

    return app
