"""Reading InvokeEndpoint's body over raw ASGI: a client that goes away, a short body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mme_local.gateway.app import Gateway, create_app
from mme_local.gateway.service import InvokeResponse
from tests.unit.test_gateway import FakeAdmin, FakeService

Message = dict[str, Any]


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/endpoints/local-mme/invocations",
        "raw_path": b"/endpoints/local-mme/invocations",
        "query_string": b"",
        "headers": [(b"x-amzn-sagemaker-target-model", b"m.tar.gz"), *headers],
    }


def _receive(messages: list[Message]) -> Callable[[], Awaitable[Message]]:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _run(
    headers: list[tuple[bytes, bytes]], messages: list[Message]
) -> tuple[FakeService, list[Message]]:
    service = FakeService(InvokeResponse(b"ok", None, None, "AllTraffic"))
    app = create_app(lambda: Gateway(service, FakeAdmin()))  # type: ignore[arg-type]
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(headers), _receive(messages), send)  # type: ignore[arg-type]
    return service, sent


async def test_a_client_gone_mid_body_invokes_nothing_and_gets_no_answer() -> None:
    service, sent = await _run(
        [(b"content-length", b"100")],
        [
            {"type": "http.request", "body": b"x" * 40, "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert service.requests == [], "a truncated body must not reach the model"
    assert sent == []


async def test_a_client_gone_before_any_body_invokes_nothing() -> None:
    service, sent = await _run([(b"content-length", b"10")], [{"type": "http.disconnect"}])
    assert service.requests == []
    assert sent == []


async def test_a_body_shorter_than_its_content_length_is_refused() -> None:
    service, sent = await _run(
        [(b"content-length", b"100")],
        [{"type": "http.request", "body": b"x" * 40, "more_body": False}],
    )
    assert service.requests == []
    assert sent[0]["status"] == 400
    error = json.loads(sent[1]["body"])
    assert error["Message"] == "Received 40 bytes of a body whose Content-Length is 100."


async def test_a_body_longer_than_its_content_length_is_refused() -> None:
    service, sent = await _run(
        [(b"content-length", b"4")],
        [{"type": "http.request", "body": b"x" * 9, "more_body": False}],
    )
    assert service.requests == []
    assert sent[0]["status"] == 400


async def test_a_complete_body_is_invoked() -> None:
    service, sent = await _run(
        [(b"content-length", b"6")],
        [
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.request", "body": b"def", "more_body": False},
        ],
    )
    assert [request.body for request in service.requests] == [b"abcdef"]
    assert sent[0]["status"] == 200
