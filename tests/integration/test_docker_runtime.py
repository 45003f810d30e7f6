"""The docker runtime against a real Docker engine, with a local stand-in for NVIDIA's image.

No registry is reachable here, so the image is made with `docker import` from a tiny root
file system whose `tritonserver` is the provisioned one, run from read-only bind mounts of
the host's tree (system libraries, this Python and venv, the Triton install, a backend dir).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mme_local.runtime import provision
from mme_local.runtime.backend_dir import prepare_backend_dir, python_environment
from mme_local.runtime.base import TritonSettings
from mme_local.runtime.client import ContainerClient
from mme_local.runtime.docker_owner import (
    OWNER_HOST_LABEL,
    OWNER_LOCK_LABEL,
    OWNER_PID_LABEL,
    OWNER_STARTED_LABEL,
    OWNER_TOKEN_LABEL,
)
from mme_local.runtime.docker_runtime import (
    ENDPOINT_LABEL,
    BindMount,
    DockerTriton,
    GpuRuntimeMissing,
    ImageMissing,
    has_bridge,
)
from mme_local.runtime.errors import RuntimeExited
from tests.support import write_doubler_folder

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.integration

STANDIN_REPOSITORY = "mme-local-test/tritonserver-standin"
TRITON_BIN_DIR = "/opt/tritonserver/bin"
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:
        pytest.skip(
            f"no Docker engine reachable ({type(error).__name__}); .ci/run starts one with "
            "`dockerd --iptables=false --bridge=none --storage-driver=vfs`"
        )
    try:
        yield client
    finally:
        client.close()


def _add_dir(archive: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    archive.addfile(info)


def _add_link(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    archive.addfile(info)


def _add_file(archive: tarfile.TarFile, name: str, content: str) -> None:
    data = content.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _standin_rootfs(install: provision.TritonInstall) -> bytes:
    """A root file system of a few entries: the host's tree arrives by bind mounts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in ("etc", "opt", "opt/tritonserver", TRITON_BIN_DIR.lstrip("/"), "root"):
            _add_dir(archive, name)
        _add_dir(archive, "tmp", 0o1777)
        # Merged-/usr hosts have these as links into /usr; others get them mounted instead.
        for name in _TOP_LEVEL_LINKS:
            host = Path("/") / name
            if host.is_symlink():
                _add_link(archive, name, str(host.readlink()))
        _add_file(archive, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        _add_file(archive, "etc/group", "root:x:0:\n")
        # Where NVIDIA's image keeps it, so the runtime's plain `tritonserver` command works.
        _add_link(archive, f"{TRITON_BIN_DIR.lstrip('/')}/tritonserver", str(install.binary))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def triton_install() -> provision.TritonInstall:
    return provision.ensure()


@pytest.fixture(scope="session")
def standin_image(engine: Any, triton_install: provision.TritonInstall) -> Iterator[str]:
    tag = f"{STANDIN_REPOSITORY}:{uuid.uuid4().hex[:12]}"
    repository, version = tag.rsplit(":", 1)
    engine.api.import_image_from_data(
        _standin_rootfs(triton_install),
        repository=repository,
        tag=version,
        changes=[f"ENV PATH={TRITON_BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"],
    )
    try:
        yield tag
    finally:
        engine.images.remove(tag, force=True)


def _host_tree_mounts(install: provision.TritonInstall, backend_dir: Path) -> list[BindMount]:
    """Everything the provisioned tritonserver and its Python stub read, at the same paths."""
    paths = [
        Path("/usr"),
        *(Path("/") / name for name in _TOP_LEVEL_LINKS if (Path("/") / name).is_dir()),
        Path("/etc/ld.so.cache"),
        install.home,
        Path(sys.base_prefix),
        Path(sys.prefix),
        backend_dir,
    ]
    mounts: dict[str, BindMount] = {}
    for path in paths:
        if path.is_symlink() and path.parent == Path("/"):
            continue  # carried in the image as a link
        if path.exists():
            resolved = path.resolve()
            mounts.setdefault(str(path), BindMount(resolved, str(path)))
    # Nested mounts must come after their parents.
    return sorted(mounts.values(), key=lambda mount: mount.target.count("/"))


def _standin_triton(
    image: str,
    install: provision.TritonInstall,
    tmp_path: Path,
    gpus: str = "none",
) -> DockerTriton:
    backend_dir = prepare_backend_dir(install, tmp_path / "backends")
    settings = TritonSettings(
        # NVIDIA's image keeps its backends in /opt/tritonserver/backends; the stand-in has its own.
        extra_args=(f"--backend-directory={backend_dir}",),
        startup_timeout_s=60.0,
        stop_grace_s=5.0,
    )
    return DockerTriton(
        tmp_path / "cache",
        settings,
        image=image,
        gpus=gpus,
        endpoint_name=f"it-{uuid.uuid4().hex[:8]}",
        work_dir=tmp_path / "triton",
        extra_mounts=_host_tree_mounts(install, backend_dir),
        environment=python_environment(install)
        | {"PATH": f"{TRITON_BIN_DIR}:{python_environment(install)['PATH']}"},
        # Sandboxed CI machines lack CAP_SYS_RESOURCE, so memlock cannot be raised there.
        ulimits={"stack": 64 * 1024 * 1024},
    )


def _containers_of(engine: Any, triton: DockerTriton) -> list[Any]:
    label = f"{ENDPOINT_LABEL}={triton.endpoint_name}"
    return list(engine.containers.list(all=True, filters={"label": label}))


@pytest.fixture
async def triton(
    engine: Any, standin_image: str, triton_install: provision.TritonInstall, tmp_path: Path
) -> AsyncIterator[DockerTriton]:
    server = _standin_triton(standin_image, triton_install, tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        assert _containers_of(engine, server) == [], "stop removes the container"


async def test_load_invoke_unload_through_the_container(
    engine: Any, triton: DockerTriton, tmp_path: Path
) -> None:
    assert triton.version == provision.PYTRITON_TRITON_VERSION
    (container,) = _containers_of(engine, triton)
    # The port is published on loopback from a bridge; CI's engine (--bridge=none) has none.
    expected_network = "bridge" if has_bridge(engine) else "host"
    assert container.attrs["HostConfig"]["NetworkMode"] == expected_network
    assert any(m["Destination"] == "/opt/ml/models" for m in container.attrs["Mounts"])

    model_dir = tmp_path / "cache" / "a0b1c2" / "model"
    write_doubler_folder(model_dir / "doubler")
    url = triton.model_url(model_dir)
    assert url == "/opt/ml/models/a0b1c2/model"

    client = ContainerClient(triton.url)
    try:
        await client.load("a0b1c2", url, "doubler.tar.gz")
        body = json.dumps(
            {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3.5]}]}
        ).encode()
        answer = await client.invoke("a0b1c2", "doubler.tar.gz", body, "application/json")
        assert json.loads(answer.body)["outputs"][0]["data"] == [2.0, 4.0, 7.0]
        # tritonserver and the model's Python stub, as host PIDs.
        assert len(triton.process_ids()) >= 2
        await client.unload("a0b1c2", "doubler.tar.gz")
    finally:
        await client.aclose()

    assert "server_version" in triton.log_tail(200)
    assert "successfully loaded '/opt/ml/models/a0b1c2/model::doubler.tar.gz'" in (
        triton.log_path.read_text()
    )


async def test_a_killed_container_is_reported_and_restarts_on_its_port(
    engine: Any, triton: DockerTriton
) -> None:
    (container,) = _containers_of(engine, triton)
    url = triton.url
    container.kill()
    deadline = time.monotonic() + 15
    with pytest.raises(RuntimeExited) as raised:
        while time.monotonic() < deadline:
            triton.check_alive()
            time.sleep(0.05)
    assert raised.value.returncode == 137
    assert "server_version" in raised.value.log_tail

    # What the emulator's supervisor does: clients made for the first start keep working.
    await triton.stop()
    await triton.start()
    assert triton.url == url
    (replacement,) = _containers_of(engine, triton)
    assert replacement.id != container.id
    client = ContainerClient(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_missing_image_is_one_clear_line(
    engine: Any, triton_install: provision.TritonInstall, tmp_path: Path
) -> None:
    image = f"mme-local-test/absent:{uuid.uuid4().hex[:8]}"
    server = _standin_triton(image, triton_install, tmp_path)
    with pytest.raises(ImageMissing) as raised:
        await server.start()
    assert str(raised.value) == (
        f"image {image} is not present locally; pull it with `docker pull {image}`"
    )
    assert _containers_of(engine, server) == []


async def test_gpus_without_a_gpu_runtime_is_one_clear_line(
    engine: Any, standin_image: str, triton_install: provision.TritonInstall, tmp_path: Path
) -> None:
    server = _standin_triton(standin_image, triton_install, tmp_path, gpus="all")
    try:
        await server.start()
    except GpuRuntimeMissing as error:
        message = str(error)
    else:
        await server.stop()
        pytest.skip("this engine hands out GPUs; the failure cannot be provoked here")
    assert "\n" not in message
    assert "NVIDIA Container Toolkit" in message and "--gpus none" in message
    assert _containers_of(engine, server) == [], "a failed start leaves no container"


async def test_a_dead_controllers_container_is_removed_at_start(
    engine: Any, standin_image: str, triton_install: provision.TritonInstall, tmp_path: Path
) -> None:
    # Both leftovers claim this host and a pid that names no process here, as a controller in
    # another PID namespace would; only the lock file tells the dead owner from the live one.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    locks = tmp_path / "locks"
    locks.mkdir()
    owners = {"dead": "dead0", "live": "live0"}
    for token in owners.values():
        (locks / f"owner-{token}.lock").write_text(token)
    leftovers = {
        name: engine.containers.create(
            standin_image,
            command=["tritonserver", "--help"],
            labels={
                OWNER_HOST_LABEL: socket.gethostname(),
                OWNER_PID_LABEL: str(child.pid),
                OWNER_STARTED_LABEL: "1",
                OWNER_LOCK_LABEL: str(locks / f"owner-{token}.lock"),
                OWNER_TOKEN_LABEL: token,
            },
        )
        for name, token in owners.items()
    }
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'r+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
            str(locks / "owner-live0.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    server = _standin_triton(standin_image, triton_install, tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        await server.start()
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(leftovers["dead"].id)
        assert engine.containers.get(leftovers["live"].id).id == leftovers["live"].id
    finally:
        holder.kill()
        holder.wait()
        await server.stop()
        for leftover in leftovers.values():
            with contextlib.suppress(docker.errors.NotFound):
                leftover.remove(force=True)
