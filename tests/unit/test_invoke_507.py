"""A 507 from the container at invoke time makes room, as SageMaker does, and retries once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mme_local.cache.manager import ModelCache
from mme_local.cache.policy import Budgets
from mme_local.gateway.errors import ModelError
from mme_local.gateway.service import EndpointIdentity, EndpointService, InvokeRequest
from mme_local.metrics import Metrics
from mme_local.runtime.client import ControlCalls, InvokeResult
from mme_local.runtime.errors import InsufficientMemory
from tests.unit.test_cache import FakeContainer, FakeStore

IDENTITY = EndpointIdentity("local-mme", "AllTraffic", "123456789012", "us-east-1", "/x.log")


class OutOfMemoryOnce(FakeContainer):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.invokes: list[str] = []
        self.control_calls = ControlCalls()

    async def invoke(self, name: str, target_model: str, *args: Any, **kwargs: Any) -> InvokeResult:
        self.invokes.append(target_model)
        if self.failures:
            self.failures -= 1
            raise InsufficientMemory("CUDA out of memory", 507)
        return InvokeResult(b"ok", "application/json", None)


def _service(tmp_path: Path, failures: int) -> tuple[EndpointService, ModelCache, OutOfMemoryOnce]:
    container = OutOfMemoryOnce(failures)
    metrics = Metrics()
    cache = ModelCache(
        store=FakeStore(["a", "b"]),
        client=container,  # type: ignore[arg-type]
        model_url=str,
        cache_dir=tmp_path,
        budgets=Budgets(None, None, None, 1 << 20),
        metrics=metrics,
        memory_probe=lambda: 0,
    )
    service = EndpointService(IDENTITY, cache, container, metrics)  # type: ignore[arg-type]
    return service, cache, container


def _request(target: str) -> InvokeRequest:
    return InvokeRequest("local-mme", target, b"{}", "req-1")


async def test_a_507_at_invoke_unloads_an_idle_model_and_retries(tmp_path: Path) -> None:
    service, cache, container = _service(tmp_path, failures=0)
    await service.invoke(_request("a"))
    container.failures = 1
    response = await service.invoke(_request("b"))
    assert response.body == b"ok"
    assert container.invokes == ["a", "b", "b"]
    assert container.unloads == ["a"]
    assert [e.reason for e in cache.evictions] == ["container answered 507 on invoke"]


async def test_a_507_with_nothing_to_unload_is_the_models_error(tmp_path: Path) -> None:
    service, _, container = _service(tmp_path, failures=1)
    with pytest.raises(ModelError) as raised:
        await service.invoke(_request("a"))
    assert raised.value.original_status == 507
    assert container.unloads == []
