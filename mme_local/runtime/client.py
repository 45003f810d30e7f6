"""Async client for the MME container API that Triton's SageMaker front end (or TorchServe's
frontend) serves; what differs between them is the client's dialect (dialect.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from mme_local.runtime.dialect import Call, ContainerDialect, TritonDialect
from mme_local.runtime.errors import (
    ContainerError,
    LoadRejected,
    RuntimeTimeout,
    RuntimeUnavailable,
)
from mme_local.runtime.http1 import Http1Pool
from mme_local.runtime.model_list_mutex import ModelListMutex

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
SESSION_ID_HEADER = "X-Amzn-SageMaker-Session-Id"
NEW_SESSION_ID_HEADER = "X-Amzn-SageMaker-New-Session-Id"
CLOSED_SESSION_ID_HEADER = "X-Amzn-SageMaker-Closed-Session-Id"


@dataclass(frozen=True)
class InvokeResult:
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    new_session_id: str | None = None
    closed_session_id: str | None = None


@dataclass
class ControlCalls:
    """Load and unload calls this client has sent the container: Triton's SageMaker front end
    runs them inside an HTTP worker, and invocations on that worker wait for them (README,
    "Fidelity notes"). Read on the event loop, the only writer."""

    in_flight: int = 0
    """Sent and not yet answered."""
    started: int = 0
    """Sent since the client was made (never decreases)."""

    @contextmanager
    def track(self) -> Iterator[None]:
        self.in_flight += 1
        self.started += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def _pool_for(base_url: str) -> Http1Pool:
    url = urlsplit(base_url)
    return Http1Pool(url.hostname or "127.0.0.1", url.port or 80)


class ContainerClient:
    """Talks to one container. Bodies pass through as bytes; the target model rides every call.

    Triton >= 2.39 names a model after the `X-Amzn-SageMaker-Target-Model` header it was loaded
    with, so the same header goes on load, invoke and unload. Invoke, the warm path, goes
    through a minimal keep-alive HTTP/1.1 pool (http1.py); the rest through aiohttp, made on
    first use inside the running event loop. Both choices are measured in docs/benchmarks.md.
    """

    def __init__(
        self,
        base_url: str,
        load_timeout_s: float = 360.0,
        invoke_timeout_s: float = 60.0,
        dialect: ContainerDialect | None = None,
        model_list_mutex: ModelListMutex | None = None,
    ) -> None:
        self.dialect = dialect or TritonDialect()
        self.model_list_mutex = model_list_mutex
        """Set: the client plays the model-list mutex of Triton's SageMaker front end from
        2.64 for a server that lacks it (model_list_mutex.py)."""
        self.load_timeout_s = load_timeout_s
        self.invoke_timeout_s = invoke_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.base_url = base_url.rstrip("/")
        self._invoke_pool = _pool_for(self.base_url)
        self.control_calls = ControlCalls()
        self._load_answered: dict[str, float] = {}
        """Model -> when its last load answered (monotonic), for `dialect.unload_settle_s`."""

    def rebase(self, base_url: str) -> None:
        """Follow a model server that came back on another address after a restart."""
        self._invoke_pool.close()
        self.base_url = base_url.rstrip("/")
        self._invoke_pool = _pool_for(self.base_url)
        self._load_answered.clear()  # a new server: none of its models is loaded

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, force_close=False),
                # botocore sends no Content-Type when the caller gives none; neither do we.
                skip_auto_headers=("Content-Type", "User-Agent"),
            )
        return self._session

    async def aclose(self) -> None:
        self._invoke_pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _raise_for_status(self, status: int, content: bytes, call: Call) -> None:
        if not 200 <= status < 300:
            error_class = self.dialect.error_class(status, call)
            raise error_class(self.dialect.error_message(content), status, content)

    async def _send(
        self,
        method: str,
        path: str,
        timeout_s: float,
        call: Call,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5.0)
        try:
            async with self._client().request(
                method, self.base_url + path, data=body, headers=headers, timeout=timeout
            ) as response:
                content = await response.read()
                status, response_headers = response.status, response.headers
        except asyncio.TimeoutError as error:
            raise RuntimeTimeout(f"{method} {path} timed out after {timeout_s:.0f} s") from error
        except aiohttp.ClientError as error:
            raise RuntimeUnavailable(f"{method} {path} failed: {error!r}") from error
        self._raise_for_status(status, content, call)
        return status, content, response_headers

    async def ping(self) -> bool:
        try:
            status, _, _ = await self._send("GET", "/ping", 2.0, "ping")
        except (RuntimeUnavailable, ContainerError):
            return False
        return status == 200

    async def load(self, model_name: str, url: str, target_model: str) -> None:
        foreign = await asyncio.to_thread(self.dialect.foreign_model, url)
        if foreign is not None:
            raise LoadRejected(foreign, 400)
        try:
            with self.control_calls.track():
                await self._send(
                    "POST",
                    "/models",
                    self.load_timeout_s,
                    "load",
                    json.dumps({"model_name": model_name, "url": url}).encode(),
                    {TARGET_MODEL_HEADER: target_model, "Content-Type": "application/json"},
                )
                if self.model_list_mutex is not None:
                    # A load adds its model to the list, under the mutex, before answering.
                    await self.model_list_mutex.pass_through()
            self._load_answered[model_name] = time.monotonic()
        except ContainerError as error:
            if self.dialect.load_failure_leaves_model(error.status_code):
                await self._unregister_failed(model_name, target_model)
            raise

    async def _unregister_failed(self, model_name: str, target_model: str) -> None:
        """A load that failed yet left the model registered: drop it, so the next load of
        this model is a load and not a 409."""
        with contextlib.suppress(ContainerError, RuntimeUnavailable):
            await self.unload(model_name, target_model)

    async def unload(self, model_name: str, target_model: str) -> None:
        with self.control_calls.track():
            answered = self._load_answered.get(model_name)
            if answered is not None:
                settle = answered + self.dialect.unload_settle_s - time.monotonic()
                if settle > 0:
                    await asyncio.sleep(settle)  # cancelled here, the next unload still waits
                self._load_answered.pop(model_name, None)
            async with self._held_for_unload():
                await self._send(
                    "DELETE",
                    f"/models/{model_name}",
                    self.load_timeout_s,
                    "unload",
                    headers={TARGET_MODEL_HEADER: target_model},
                )

    @contextlib.asynccontextmanager
    async def _held_for_unload(self) -> AsyncIterator[None]:
        if self.model_list_mutex is None:
            yield
            return
        async with self.model_list_mutex.held_for_unload():
            yield

    async def _listing_passes(self) -> None:
        if self.model_list_mutex is not None:
            try:
                await self.model_list_mutex.pass_through(self.invoke_timeout_s)
            except asyncio.TimeoutError as error:
                raise RuntimeTimeout("GET /models waited too long for an unload") from error

    async def list_models(self) -> list[dict[str, Any]]:
        await self._listing_passes()
        _, content, _ = await self._send("GET", "/models", self.invoke_timeout_s, "list")
        models = json.loads(content).get("models", [])
        return [model for model in models if isinstance(model, dict)]

    async def get_model(self, model_name: str, target_model: str) -> dict[str, Any]:
        await self._listing_passes()
        _, content, _ = await self._send(
            "GET",
            f"/models/{model_name}",
            self.invoke_timeout_s,
            "describe",
            headers={TARGET_MODEL_HEADER: target_model},
        )
        return self.dialect.model_description(json.loads(content))

    async def invoke(
        self,
        model_name: str,
        target_model: str,
        body: bytes,
        content_type: str | None = None,
        accept: str | None = None,
        custom_attributes: str | None = None,
        timeout_s: float | None = None,
        session_id: str | None = None,
    ) -> InvokeResult:
        """`timeout_s` (default `invoke_timeout_s`) is what is left of the request's deadline."""
        limit_s = self.invoke_timeout_s if timeout_s is None else timeout_s
        headers = {TARGET_MODEL_HEADER: target_model}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        if custom_attributes:
            headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
        if session_id:
            headers[SESSION_ID_HEADER] = session_id
        path = f"/models/{model_name}/invoke"
        if self.model_list_mutex is not None:
            try:
                limit_s -= await self.model_list_mutex.invocation_passes(limit_s)
            except asyncio.TimeoutError as error:
                raise RuntimeTimeout(
                    f"POST {path} waited {limit_s:.1f} s for a model unload to end"
                ) from error
        try:
            answer = await self._invoke_pool.request("POST", path, headers, body, limit_s)
        except TimeoutError as error:
            raise RuntimeTimeout(f"POST {path} timed out after {limit_s:.1f} s") from error
        except OSError as error:  # ConnectionLost, refused, reset
            raise RuntimeUnavailable(f"POST {path} failed: {error!r}") from error
        self._raise_for_status(answer.status, answer.body, "invoke")
        return InvokeResult(
            body=answer.body,
            content_type=answer.headers.get("content-type"),
            custom_attributes=answer.headers.get(CUSTOM_ATTRIBUTES_HEADER.lower()),
            new_session_id=answer.headers.get(NEW_SESSION_ID_HEADER.lower()),
            closed_session_id=answer.headers.get(CLOSED_SESSION_ID_HEADER.lower()),
        )
