"""Routes: SageMaker Runtime's InvokeEndpoint, /ping, /metrics, and the admin views.

Handlers only translate between HTTP and the transport-free service and views. InvokeEndpoint
is dispatched before the framework (see invocations.py); everything else goes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mme_local.gateway.admin import AdminViews
from mme_local.gateway.invocations import endpoint_name_of, handle_invocations
from mme_local.gateway.service import EndpointService

ADMIN_PREFIX = "/_mme"


@dataclass(frozen=True)
class Gateway:
    """What the routes serve: InvokeEndpoint through the service, the rest from the views."""

    service: EndpointService
    admin: AdminViews


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
    ]
    framework = Starlette(routes=routes, lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint_name = endpoint_name_of(scope["path"])
            if endpoint_name is not None:
                await handle_invocations(gateway().service, endpoint_name, scope, receive, send)
                return
        await framework(scope, receive, send)

    return app
