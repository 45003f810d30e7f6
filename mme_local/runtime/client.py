"""Async client for the MME container API that Triton's SageMaker front end serves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    LoadRejected,
    ModelAlreadyLoaded,
    ModelNotFound,
    RuntimeTimeout,
    RuntimeUnavailable,
)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

_ERRORS_BY_STATUS: dict[int, type[ContainerError]] = {
    400: LoadRejected,
    404: ModelNotFound,
    409: ModelAlreadyLoaded,
    507: InsufficientMemory,
}


@dataclass(frozen=True)
class InvokeResult:
    body: bytes
    content_type: str | None
    custom_attributes: str | None


def _error_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    return body.decode(errors="replace")


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    error_class = _ERRORS_BY_STATUS.get(response.status_code, ContainerError)
    raise error_class(_error_message(response.content), response.status_code, response.content)


class ContainerClient:
    """Talks to one container. Bodies pass through as bytes; the target model rides every call.

    Triton >= 2.39 names a model after the `X-Amzn-SageMaker-Target-Model` header it was loaded
    with, so the same header goes on load, invoke and unload.
    """

    def __init__(
        self,
        base_url: str,
        load_timeout_s: float = 360.0,
        invoke_timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.load_timeout_s = load_timeout_s
        self.invoke_timeout_s = invoke_timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(invoke_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            transport=transport,
        )

    def rebase(self, base_url: str) -> None:
        """Follow a model server that came back on another address after a restart."""
        self._http.base_url = httpx.URL(base_url)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise RuntimeTimeout(f"{method} {path} timed out: {error!r}") from error
        except httpx.TransportError as error:
            raise RuntimeUnavailable(f"{method} {path} failed: {error!r}") from error
        _raise_for_status(response)
        return response

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping", timeout=2.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def load(self, model_name: str, url: str, target_model: str) -> None:
        await self._send(
            "POST",
            "/models",
            json={"model_name": model_name, "url": url},
            headers={TARGET_MODEL_HEADER: target_model},
            timeout=self.load_timeout_s,
        )

    async def unload(self, model_name: str, target_model: str) -> None:
        await self._send(
            "DELETE",
            f"/models/{model_name}",
            headers={TARGET_MODEL_HEADER: target_model},
            timeout=self.load_timeout_s,
        )

    async def list_models(self) -> list[dict[str, Any]]:
        response = await self._send("GET", "/models")
        models = response.json().get("models", [])
        return [model for model in models if isinstance(model, dict)]

    async def get_model(self, model_name: str, target_model: str) -> dict[str, Any]:
        response = await self._send(
            "GET", f"/models/{model_name}", headers={TARGET_MODEL_HEADER: target_model}
        )
        result: dict[str, Any] = response.json()
        return result

    async def invoke(
        self,
        model_name: str,
        target_model: str,
        body: bytes,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
    ) -> InvokeResult:
        headers = {TARGET_MODEL_HEADER: target_model}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        if custom_attributes:
            headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
        response = await self._send(
            "POST", f"/models/{model_name}/invoke", content=body, headers=headers
        )
        return InvokeResult(
            body=response.content,
            content_type=response.headers.get("content-type"),
            custom_attributes=response.headers.get(CUSTOM_ATTRIBUTES_HEADER),
        )
