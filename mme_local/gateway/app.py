"""Routes: SageMaker Runtime's InvokeEndpoint, /ping, /metrics, and the admin views.

Handlers only translate between HTTP and the transport-free service and views.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mme_local.gateway.errors import InternalFailure, SageMakerError
from mme_local.gateway.service import EndpointService, InvokeRequest
from mme_local.gateway.validation import check_body_size

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_mme"


class Backend(Protocol):
    """What the routes need from the running emulator."""

    @property
    def service(self) -> EndpointService: ...

    def healthy(self) -> bool: ...

    def metrics_text(self) -> bytes: ...

    async def models_view(self) -> list[dict[str, Any]]: ...

    def evictions_view(self) -> list[dict[str, Any]]: ...

    def status_view(self) -> dict[str, Any]: ...


def create_app(
    backend: Callable[[], Backend],
    lifespan: Any = None,
) -> Starlette:
    """`backend` is looked up per request so the app can exist before the emulator starts."""

    async def invocations(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        headers = request.headers
        try:
            declared = headers.get("content-length")
            if declared and declared.isdigit():
                check_body_size(int(declared))
            invoke = InvokeRequest(
                endpoint_name=request.path_params["endpoint_name"],
                target_model=headers.get("x-amzn-sagemaker-target-model"),
                body=await request.body(),
                request_id=request_id,
                content_type=headers.get("content-type"),
                accept=headers.get("accept"),
                custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
                inference_id=headers.get("x-amzn-sagemaker-inference-id"),
                target_variant=headers.get("x-amzn-sagemaker-target-variant"),
            )
            result = await backend().service.invoke(invoke)
        except SageMakerError as error:
            return error.to_response(request_id)
        except Exception:
            log.exception("unexpected failure in InvokeEndpoint")
            return InternalFailure("An internal error occurred.").to_response(request_id)
        response_headers = {
            "x-Amzn-Invoked-Production-Variant": result.variant_name,
            "x-amzn-RequestId": request_id,
        }
        if result.custom_attributes is not None:
            response_headers["X-Amzn-SageMaker-Custom-Attributes"] = result.custom_attributes
        return Response(
            content=result.body,
            media_type=result.content_type or "application/json",
            headers=response_headers,
        )

    async def ping(request: Request) -> Response:
        return Response(status_code=200 if backend().healthy() else 503)

    async def metrics(request: Request) -> Response:
        return Response(backend().metrics_text(), media_type="text/plain; version=0.0.4")

    def admin(view: Callable[[], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return JSONResponse(await view())

        return handler

    async def models_view() -> Any:
        return await backend().models_view()

    async def evictions_view() -> Any:
        return backend().evictions_view()

    async def status_view() -> Any:
        return backend().status_view()

    routes = [
        Route("/endpoints/{endpoint_name}/invocations", invocations, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/models", admin(models_view), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/evictions", admin(evictions_view), methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/status", admin(status_view), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
