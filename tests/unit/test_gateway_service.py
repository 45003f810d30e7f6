"""EndpointService with a fake cache, container and clock: one deadline per request, the
CloudWatch error counts and latencies, and the members an MME refuses or passes through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mme_local.cache.manager import ModelNotReady
from mme_local.gateway import service as service_module
from mme_local.gateway.errors import ModelError, ModelNotReadyException, ValidationError
from mme_local.gateway.fleet import Member
from mme_local.gateway.service import (
    EndpointIdentity,
    EndpointService,
    InvocationRecord,
    InvokeRequest,
    ServiceOptions,
)
from mme_local.metrics import Metrics
from mme_local.metrics_reader import read_samples
from mme_local.runtime.client import ContainerClient, ControlCalls, InvokeResult
from mme_local.runtime.errors import ContainerError, RuntimeTimeout, RuntimeUnavailable

IDENTITY = EndpointIdentity("local-mme", "AllTraffic", "123456789012", "us-east-1", Path("/x.log"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@dataclass
class FakeLease:
    name: str = "0" * 32
    cache_hit: bool = False
    waited_s: float = 0.0


class FakeCache:
    """Loads take `load_s` of fake time; a wait longer than its limit raises ModelNotReady."""

    def __init__(self, clock: FakeClock, load_s: float, ready_timeout_s: float = 60.0) -> None:
        self.clock = clock
        self.load_s = load_s
        self.ready_timeout_s = ready_timeout_s
        self.timeouts: list[float | None] = []

    @asynccontextmanager
    async def acquire(
        self, target_model: str, timeout_s: float | None = None
    ) -> AsyncIterator[FakeLease]:
        self.timeouts.append(timeout_s)
        limit = self.ready_timeout_s if timeout_s is None else timeout_s
        if self.load_s > limit:
            self.clock.now += limit
            raise ModelNotReady(target_model, limit)
        self.clock.now += self.load_s
        yield FakeLease(cache_hit=self.load_s == 0, waited_s=self.load_s)

    def mark_not_loaded(self, lease: FakeLease) -> None:
        pass


class FakeClient:
    def __init__(self, clock: FakeClock, model_s: float, outcome: Any = None) -> None:
        self.clock = clock
        self.model_s = model_s
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []
        self.control_calls = ControlCalls()
        self.during_call: Callable[[], None] = lambda: None

    async def invoke(self, *args: Any, **kwargs: Any) -> InvokeResult:
        self.calls.append(kwargs)
        self.during_call()
        limit = kwargs["timeout_s"]
        if self.model_s > limit:
            self.clock.now += limit
            raise RuntimeTimeout("slow")
        self.clock.now += self.model_s
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome or InvokeResult(b"ok", "application/json", None, "s-1; Expires=x")


def _service(
    monkeypatch: pytest.MonkeyPatch,
    load_s: float = 0.0,
    model_s: float = 0.01,
    outcome: Any = None,
    deadline_s: float = 60.0,
) -> tuple[EndpointService, FakeCache, FakeClient, Metrics]:
    clock = FakeClock()
    monkeypatch.setattr(service_module, "time", clock)
    cache, client, metrics = (
        FakeCache(clock, load_s),
        FakeClient(clock, model_s, outcome),
        Metrics(),
    )
    service = EndpointService(
        IDENTITY,
        cache,  # type: ignore[arg-type]
        client,  # type: ignore[arg-type]
        metrics,
        ServiceOptions(deadline_s=deadline_s),
    )
    return service, cache, client, metrics


def _request(**headers: str) -> InvokeRequest:
    return InvokeRequest("local-mme", "m.tar.gz", b"{}", "req-1", **headers)  # type: ignore[arg-type]


def _count(metrics: Metrics, name: str) -> float:
    return read_samples(metrics.render().decode())[name]


async def test_the_container_gets_what_the_load_left_of_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, cache, client, _ = _service(monkeypatch, load_s=45.0, model_s=1.0)
    await service.invoke(_request())
    assert cache.timeouts == [60.0]
    assert client.calls[0]["timeout_s"] == pytest.approx(15.0)


async def test_a_slow_load_then_a_slow_model_is_a_timeout_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, client, metrics = _service(monkeypatch, load_s=45.0, model_s=30.0)
    with pytest.raises(ModelError) as raised:
        await service.invoke(_request())
    assert raised.value.original_status == 0
    assert client.calls[0]["timeout_s"] == pytest.approx(15.0)
    assert _count(metrics, "mme_invocation_5xx_errors_total") == 1
    assert _count(metrics, "mme_invocation_4xx_errors_total") == 0


async def test_the_wait_for_a_model_never_outlasts_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, cache, client, _ = _service(monkeypatch, load_s=100.0, deadline_s=20.0)
    with pytest.raises(ModelNotReadyException):
        await service.invoke(_request())
    assert cache.timeouts == [20.0]
    assert client.calls == []


async def test_a_429_belongs_to_the_instance_it_was_routed_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No lease, so no instance leased the model; the live page still counts the 429 on the
    instance that was busy loading, not on the first one."""
    service, cache, client, _ = _service(monkeypatch, load_s=100.0, deadline_s=20.0)
    seen: list[InvocationRecord] = []
    service.observer = seen.append
    second = Member(1, cache, client)  # type: ignore[arg-type]
    monkeypatch.setattr(service.fleet, "pick", lambda target: second)
    with pytest.raises(ModelNotReadyException):
        await service.invoke(_request())
    with pytest.raises(ValidationError):
        await service.invoke(InvokeRequest("local-mme", "", b"{}", "req-2"))
    assert [(r.status, r.instance, r.routed) for r in seen] == [(429, None, 1), (400, None, None)]


@pytest.mark.parametrize(
    ("status", "four", "five"), [(400, 1, 0), (404, 1, 0), (500, 0, 1), (507, 0, 1)]
)
async def test_error_counts_follow_the_models_status(
    monkeypatch: pytest.MonkeyPatch, status: int, four: int, five: int
) -> None:
    service, _, _, metrics = _service(monkeypatch, outcome=ContainerError("x", status, b"x"))
    with pytest.raises(ModelError):
        await service.invoke(_request())
    assert _count(metrics, "mme_invocation_4xx_errors_total") == four
    assert _count(metrics, "mme_invocation_5xx_errors_total") == five
    assert _count(metrics, "mme_invocation_model_errors_total") == 1


async def test_overhead_latency_includes_the_wait_for_the_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, _, metrics = _service(monkeypatch, load_s=5.0, model_s=2.0)
    await service.invoke(_request())
    samples = read_samples(metrics.render().decode())
    assert samples["mme_model_latency_seconds_sum"] == pytest.approx(2.0)
    assert samples["mme_overhead_latency_seconds_sum"] == pytest.approx(5.0)
    assert samples["mme_invocations_per_instance_total"] == 1


def test_cloudwatch_metrics_carry_endpoint_and_variant_labels() -> None:
    text = Metrics("shop-mme", "Blue").render().decode()
    assert 'mme_invocations_total{endpoint_name="shop-mme",variant_name="Blue"} 0.0' in text
    assert "mme_gpu_utilization_percent{" not in text, "no GPU sample until one is measured"


async def test_session_ids_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    service, _, client, _ = _service(monkeypatch)
    response = await service.invoke(_request(session_id="NEW_SESSION"))
    assert client.calls[0]["session_id"] == "NEW_SESSION"
    assert response.new_session_id == "s-1; Expires=x"


@pytest.mark.parametrize(
    ("member", "value", "words"),
    [
        ("inference_component", "ic-1", "Inference Component Name header is not allowed"),
        ("target_container_hostname", "second", "not configured for direct invocation"),
        ("enable_explanations", "`true`", "has no ClarifyExplainerConfig"),
        ("inference_id", " leading-space", r"\A\S[\p{Print}]*\z"),
        ("session_id", "bad_session", "^(NEW_SESSION)$"),
        ("content_type", "text/é", "at 'contentType'"),
        ("accept", "x" * 1025, "at 'accept'"),
        ("target_variant", "Bad_Variant", "at 'targetVariant'"),
        ("prefix_aware_id", " leading-space", "at 'prefixAwareId'"),
        ("prefix_aware_id", "p" * 65, "at 'prefixAwareId'"),
    ],
)
async def test_members_an_mme_refuses(
    monkeypatch: pytest.MonkeyPatch, member: str, value: str, words: str
) -> None:
    service, _, client, metrics = _service(monkeypatch)
    with pytest.raises(ValidationError) as raised:
        await service.invoke(_request(**{member: value}))
    assert words in raised.value.message
    assert client.calls == []
    assert _count(metrics, "mme_invocation_4xx_errors_total") == 1


async def test_a_prefix_aware_id_is_accepted_and_stays_with_the_platform(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A routing hint (botocore: "applies only to endpoints configured with a RoutingStrategy
    of PREFIX_AWARE", and only among two or more instances): validated, then not sent on."""
    service, _, client, _ = _service(monkeypatch)
    await service.invoke(_request(prefix_aware_id="app-7"))
    assert "prefix_aware_id" not in client.calls[0]


async def test_an_invocation_sent_while_a_load_runs_is_counted_with_its_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, client, metrics = _service(monkeypatch, model_s=1.5)
    client.control_calls.in_flight = 1  # another model's load or unload, at the container
    await service.invoke(_request())
    samples = read_samples(metrics.render().decode())
    assert samples["mme_invocations_during_load_or_unload_total"] == 1
    assert samples["mme_model_latency_during_load_or_unload_seconds_count"] == 1
    assert samples["mme_model_latency_during_load_or_unload_seconds_sum"] == pytest.approx(1.5)


async def test_an_invocation_a_load_started_and_ended_under_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, client, metrics = _service(monkeypatch)
    client.during_call = lambda: setattr(client.control_calls, "started", 1)
    await service.invoke(_request())
    assert _count(metrics, "mme_invocations_during_load_or_unload_total") == 1


async def test_an_invocation_on_a_quiet_instance_is_not_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, _, metrics = _service(monkeypatch)
    await service.invoke(_request())
    assert _count(metrics, "mme_invocations_during_load_or_unload_total") == 0
    assert _count(metrics, "mme_model_latency_during_load_or_unload_seconds_count") == 0
    assert _count(metrics, "mme_model_latency_seconds_count") == 1


async def test_the_client_counts_its_load_and_unload_calls_while_they_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ContainerClient("http://127.0.0.1:1")
    seen: list[tuple[int, int]] = []

    async def send(*args: Any, **kwargs: Any) -> Any:
        seen.append((client.control_calls.in_flight, client.control_calls.started))
        raise RuntimeUnavailable("refused")

    monkeypatch.setattr(client, "_send", send)
    with pytest.raises(RuntimeUnavailable):
        await client.load("m", "/models/m", "m.tar.gz")
    with pytest.raises(RuntimeUnavailable):
        await client.unload("m", "m.tar.gz")
    assert seen == [(1, 1), (1, 2)]
    assert client.control_calls.in_flight == 0, "a failed call is no longer in flight"
    await client.aclose()
