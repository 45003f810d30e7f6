"""The container client speaks each stack's dialect of the MME container API.

A small aiohttp server on loopback answers as TorchServe 0.12 and Triton 2.51 were seen to
answer (bodies copied from real servers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from mme_local.runtime.client import ContainerClient
from mme_local.runtime.dialect import TorchServeDialect, TritonDialect, dialect_for
from mme_local.runtime.errors import (
    ContainerError,
    InsufficientMemory,
    LoadRejected,
    ModelAlreadyLoaded,
    ModelNotFound,
)


def _torchserve_error(status: int, kind: str, message: str) -> web.Response:
    body = {"code": status, "type": kind, "message": message}
    return web.json_response(body, status=status)


class FakeTorchServe:
    """Registers models by name; `outcome[url]` makes a load of that url fail."""

    def __init__(self) -> None:
        self.models: dict[str, str] = {}
        self.deleted: list[str] = []
        self.outcome: dict[str, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/models", self.load)
        app.router.add_delete("/models/{name}", self.unload)
        app.router.add_get("/models/{name}", self.describe)
        app.router.add_post("/models/{name}/invoke", self.invoke)
        return app

    async def load(self, request: web.Request) -> web.Response:
        body = await request.json()
        name, url = body["model_name"], body["url"]
        status = self.outcome.get(url)
        if status == 404:
            return _torchserve_error(404, "ModelNotFoundException", f"Model not found at: {url}")
        if name in self.models:
            return _torchserve_error(
                409, "ConflictStatusException", f"Model version 1.0 is already registered: {name}"
            )
        if status == 500:
            return _torchserve_error(
                500, "InternalServerException", f"Failed to start workers for model {name}"
            )
        self.models[name] = url
        if status == 507:  # a handler raising MemoryError: the model stays registered
            return _torchserve_error(
                507, "InternalServerException", f"Failed to start workers for model {name}"
            )
        return web.json_response({"status": f'Model "{name}" registered'})

    async def unload(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.models.pop(name, None) is None:
            return _torchserve_error(404, "ModelNotFoundException", f"Model not found: {name}")
        self.deleted.append(name)
        return web.json_response({"status": f'Model "{name}" unregistered'})

    async def describe(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response([{"modelName": name, "workers": [{"pid": 1}]}])

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.models:
            return _torchserve_error(404, "ModelNotFoundException", f"Model not found: {name}")
        return _torchserve_error(503, "InternalServerException", "Prediction failed")


@pytest.fixture
async def torchserve() -> AsyncIterator[tuple[FakeTorchServe, ContainerClient]]:
    fake = FakeTorchServe()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = ContainerClient(f"http://127.0.0.1:{port}", dialect=dialect_for("torchserve"))
    yield fake, client
    await client.aclose()
    await runner.cleanup()


async def test_a_507_load_is_unregistered_before_it_is_reported(
    torchserve: tuple[FakeTorchServe, ContainerClient],
) -> None:
    fake, client = torchserve
    fake.outcome["/big"] = 507
    with pytest.raises(InsufficientMemory, match="Failed to start workers"):
        await client.load("m1", "/big", "big.tar.gz")
    assert fake.deleted == ["m1"] and fake.models == {}
    # So the next load after making room is a load, not a 409.
    fake.outcome.clear()
    await client.load("m1", "/big", "big.tar.gz")


async def test_load_failures_are_rejections_as_on_triton(
    torchserve: tuple[FakeTorchServe, ContainerClient],
) -> None:
    fake, client = torchserve
    fake.outcome.update({"/missing": 404, "/broken": 500})
    with pytest.raises(LoadRejected, match="Model not found at: /missing"):
        await client.load("a", "/missing", "a.tar.gz")
    with pytest.raises(LoadRejected) as rejected:
        await client.load("b", "/broken", "b.tar.gz")
    assert rejected.value.status_code == 500
    assert fake.deleted == []


async def test_other_answers_keep_their_meaning(
    torchserve: tuple[FakeTorchServe, ContainerClient],
) -> None:
    _, client = torchserve
    await client.load("a", "/ok", "a.tar.gz")
    with pytest.raises(ModelAlreadyLoaded):
        await client.load("a", "/ok", "a.tar.gz")
    with pytest.raises(ModelNotFound, match=r"^Model not found: nope$"):
        await client.invoke("nope", "nope.tar.gz", b"{}")
    with pytest.raises(ContainerError, match=r"^Prediction failed$") as failed:
        await client.invoke("a", "a.tar.gz", b"{}")
    assert failed.value.status_code == 503
    assert (await client.get_model("a", "a.tar.gz"))["modelName"] == "a"


def test_triton_keeps_its_own_words() -> None:
    triton, torchserve = TritonDialect(), TorchServeDialect()
    assert triton.error_message(b'{"error":"failed to load"}') == "failed to load"
    assert torchserve.error_message(b'{"code":404,"message":"gone"}') == "gone"
    assert triton.error_message(b"<html>") == "<html>"
    assert triton.error_class(404, "load") is ModelNotFound
    assert torchserve.error_class(404, "load") is LoadRejected
    assert torchserve.error_class(404, "invoke") is ModelNotFound
    assert not triton.load_failure_leaves_model(507)
    assert triton.model_description({"name": "x"}) == {"name": "x"}
    assert torchserve.model_description(json.loads('[{"modelName": "x"}]')) == {"modelName": "x"}


async def test_a_folder_of_the_other_stack_is_refused_before_the_call(
    torchserve: tuple[FakeTorchServe, ContainerClient], tmp_path: Path
) -> None:
    fake, client = torchserve
    triton_model = tmp_path / "hash" / "model" / "bert"
    (triton_model / "1").mkdir(parents=True)
    (triton_model / "config.pbtxt").write_text('platform: "pytorch_libtorch"\n')
    with pytest.raises(LoadRejected, match=r"^a Triton archive \(config.pbtxt\) on a TorchServe"):
        await client.load("m", str(tmp_path / "hash" / "model"), "m.tar.gz")
    assert fake.models == {}
    # A path that is not a folder here (a container's) goes to the server as it is.
    await client.load("m", "/opt/ml/models/hash/model", "m.tar.gz")
    assert fake.models == {"m": "/opt/ml/models/hash/model"}


def test_triton_refuses_a_torchserve_folder(tmp_path: Path) -> None:
    (tmp_path / "bert" / "MAR-INF").mkdir(parents=True)
    (tmp_path / "bert" / "MAR-INF" / "MANIFEST.json").write_text("{}")
    message = TritonDialect().foreign_model(str(tmp_path))
    assert message is not None and message.startswith("a TorchServe archive")
    assert TorchServeDialect().foreign_model(str(tmp_path)) is None
