"""The torch host and its wire, in process: a real socket, real shared memory, real torch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mme_local.runtime.torch_host import (
    TorchHost,
    jit_loader,
    positional_order,
    tensor_bytes,
)
from mme_local.runtime.torch_host_wire import (
    Area,
    HostConnection,
    HostError,
    connect,
    layout,
    needed,
    receive,
    send,
)

DTYPES = ["<f4", "<f8", "<f2", "<i4", "<i8", "|i1", "|u1", "|b1", "<i2"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        hnp.arrays(
            dtype=st.sampled_from(DTYPES).map(np.dtype),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
        ),
        max_size=5,
    )
)
def test_arrays_written_to_an_area_read_back_unchanged(arrays: list[np.ndarray[Any, Any]]) -> None:
    area = Area.create(max(needed(arrays), 1))
    try:
        described = area.write(arrays)
        for array, where in zip(arrays, described, strict=True):
            back = np.array(area.view(where))  # a copy: the area can close whatever happens
            assert back.dtype == array.dtype and back.shape == array.shape
            np.testing.assert_array_equal(back, array)
    finally:
        area.close()


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_layout_aligns_and_never_overlaps(sizes: list[int]) -> None:
    arrays = [np.zeros(size, dtype=np.uint8) for size in sizes]
    offsets = layout(arrays)
    for offset in offsets:
        assert offset % 64 == 0
    for number in range(len(arrays) - 1):
        assert offsets[number] + arrays[number].nbytes <= offsets[number + 1]
    if arrays:
        assert needed(arrays) == offsets[-1] + arrays[-1].nbytes


def test_a_view_outside_the_area_is_refused() -> None:
    area = Area.create(128)
    try:
        with pytest.raises(ValueError, match="does not fit"):
            area.view({"dtype": "<f4", "shape": [64], "offset": 0})
    finally:
        area.close()


def test_config_names_are_ordered_as_libtorch_binds_them() -> None:
    assert positional_order(["INPUT__1", "INPUT__0"], []) == ["INPUT__0", "INPUT__1"]
    assert positional_order(["mask", "ids"], ["ids", "mask"]) == ["ids", "mask"]
    assert positional_order(["b", "a"], ["x"]) == ["b", "a"]


class Scale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((4,), 3.0))
        self.register_buffer("shared", self.weight.data)  # the same storage: counted once

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.weight, x.sum() + y


@pytest.fixture
def module_path(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    torch.jit.script(Scale()).save(str(path))  # type: ignore[no-untyped-call]
    return path


@contextmanager
def serving(host: TorchHost) -> Iterator[TorchHost]:
    host.listen()
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.close()
        thread.join(5)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[TorchHost]:
    with serving(TorchHost(str(tmp_path / "host.sock"))) as running:
        yield running


def _load(host: TorchHost, path: Path, name: str = "m.tar.gz") -> HostConnection:
    connection = HostConnection.open(host.socket_path, wait_s=5)
    answer = connection.load(
        {
            "model": name,
            "path": str(path),
            "gpu": None,
            "inputs": ["INPUT__1", "INPUT__0"],
            "outputs": [["OUTPUT__0", "<f4"], ["OUTPUT__1", "<f8"]],
        }
    )
    assert answer["inputs"] == ["INPUT__0", "INPUT__1"]
    return connection


def _wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_a_module_loads_answers_and_is_freed_when_its_stub_goes(
    host: TorchHost, module_path: Path
) -> None:
    connection = _load(host, module_path)
    [hosted] = host.hosted()
    assert (hosted.model, hosted.path, hosted.device) == ("m.tar.gz", str(module_path), "cpu")
    assert (hosted.host_bytes, hosted.gpu_bytes) == (4 * 4, 0)

    x = np.arange(4, dtype=np.float32)
    first, second = connection.infer([x, np.array([1.5], dtype=np.float32)])
    np.testing.assert_array_equal(first, x * 3)
    assert second.dtype == np.float64  # converted to the config's output type
    np.testing.assert_array_equal(second, [7.5])

    connection.close()
    _wait_until(lambda: host.hosted() == [])


def test_stats_name_what_is_held_under_a_folder(host: TorchHost, module_path: Path) -> None:
    connection = _load(host, module_path)
    try:
        sock = connect(host.socket_path, 1.0)
        with sock:
            send(sock, {"op": "stats", "path_contains": str(module_path.parent)})
            [held] = receive(sock)[0]["models"]
            assert held["path"] == str(module_path) and held["host_bytes"] == 16
        with connect(host.socket_path, 1.0) as sock:
            send(sock, {"op": "stats", "path_contains": "/elsewhere/"})
            assert receive(sock)[0]["models"] == []
    finally:
        connection.close()


def test_tensors_bigger_than_the_area_grow_it_on_either_side(
    host: TorchHost, module_path: Path
) -> None:
    connection = _load(host, module_path)
    try:
        big = np.ones((300_000, 4), dtype=np.float32)  # 4.8 MB each way, over the 1 MiB area
        first, second = connection.infer([big, np.zeros(1, dtype=np.float32)])
        np.testing.assert_array_equal(first, big * 3)
        assert second[0] == 1_200_000
        small = np.ones(4, dtype=np.float32)
        np.testing.assert_array_equal(connection.infer([small, small[:1]])[0], small * 3)
    finally:
        connection.close()


def test_torch_errors_come_back_in_torch_words_and_the_model_stays_usable(
    host: TorchHost, module_path: Path
) -> None:
    connection = _load(host, module_path)
    try:
        with pytest.raises(HostError, match="size of tensor a"):
            connection.infer([np.ones(5, dtype=np.float32), np.ones(1, dtype=np.float32)])
        ones = np.ones(4, dtype=np.float32)
        np.testing.assert_array_equal(connection.infer([ones, ones[:1]])[0], ones * 3)
    finally:
        connection.close()


def test_a_module_that_cannot_load_is_reported_and_not_held(
    host: TorchHost, tmp_path: Path
) -> None:
    (tmp_path / "broken.pt").write_bytes(b"not a TorchScript archive")
    connection = HostConnection.open(host.socket_path, wait_s=5)
    try:
        with pytest.raises(HostError):
            connection.load(
                {"model": "x", "path": str(tmp_path / "broken.pt"), "gpu": None,
                 "inputs": ["INPUT__0"], "outputs": [["OUTPUT__0", "<f4"]]}
            )  # fmt: skip
        assert host.hosted() == []
    finally:
        connection.close()


def test_tensor_bytes_count_each_storage_once() -> None:
    assert tensor_bytes(torch.jit.script(Scale())) == (16, 0)
    assert tensor_bytes(object()) == (0, 0)


class _Blocking:
    """A loaded "module" whose calls wait for a signal: shows one model's call does not hold
    up another's."""

    def __init__(self, release: threading.Event, entered: threading.Event) -> None:
        self.release, self.entered = release, entered

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.release.wait(30)
        return x + 1


def test_calls_of_different_models_run_at_the_same_time(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def loader(path: str, device: torch.device) -> Any:
        if path.endswith("slow.pt"):
            return _Blocking(release, entered)
        return jit_loader(path, device)

    module = torch.jit.script(Scale())
    module.save(str(tmp_path / "fast.pt"))  # type: ignore[no-untyped-call]
    with serving(TorchHost(str(tmp_path / "host.sock"), loader, cpu_workers=2)) as host:
        slow = _load_single(host, tmp_path / "slow.pt")
        fast = _load(host, tmp_path / "fast.pt")
        answers: list[np.ndarray[Any, Any]] = []
        waiting = threading.Thread(target=lambda: answers.extend(slow.infer([np.zeros(2)])))
        waiting.start()
        try:
            assert entered.wait(10)
            ones = np.ones(4, dtype=np.float32)
            # Answers while the slow model's call is still inside it.
            np.testing.assert_array_equal(fast.infer([ones, ones[:1]])[0], ones * 3)
            assert not answers
        finally:
            release.set()
            waiting.join(10)
            slow.close()
            fast.close()
        np.testing.assert_array_equal(answers[0], [1.0, 1.0])


def _load_single(host: TorchHost, path: Path) -> HostConnection:
    connection = HostConnection.open(host.socket_path, wait_s=5)
    connection.load(
        {"model": "slow", "path": str(path), "gpu": None, "inputs": ["INPUT__0"],
         "outputs": [["OUTPUT__0", "<f8"]]}
    )  # fmt: skip
    return connection


def test_without_a_host_the_stub_says_where_it_should_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MME_LOCAL_TORCH_HOST", raising=False)
    with pytest.raises(ConnectionError, match="embedded Triton"):
        HostConnection.open()
    with pytest.raises(ConnectionError, match="no torch host"):
        HostConnection.open(str(tmp_path / "absent.sock"), wait_s=0.1)


class _Recording:
    """A loaded "module" that notes which thread runs each of its calls."""

    def __init__(self, threads: list[str]) -> None:
        self.threads = threads
        threads.append(threading.current_thread().name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(threading.current_thread().name)
        return x * 2


def test_a_cpu_model_is_loaded_and_called_on_one_worker_and_models_spread_over_workers(
    tmp_path: Path,
) -> None:
    # One thread per CPU model from load to unload keeps the OpenMP teams few, and no
    # hand-over between threads on a call; the least busy worker takes the next model.
    threads: dict[str, list[str]] = {}

    def loader(path: str, device: torch.device) -> Any:
        return _Recording(threads.setdefault(Path(path).name, []))

    with serving(TorchHost(str(tmp_path / "host.sock"), loader, cpu_workers=2)) as host:
        first = _load_single(host, tmp_path / "a.pt")
        second = _load_single(host, tmp_path / "b.pt")
        for _ in range(3):
            np.testing.assert_array_equal(first.infer([np.ones(2)])[0], [2.0, 2.0])
            second.infer([np.ones(2)])
        second.close()
        _wait_until(lambda: len(host.hosted()) == 1)
        third = _load_single(host, tmp_path / "c.pt")  # the worker `b` had is free again
        third.infer([np.ones(2)])
        first.close()
        third.close()
    assert {len(set(names)) for names in threads.values()} == {1}
    a, b, c = (threads[name][0] for name in ("a.pt", "b.pt", "c.pt"))
    assert a.startswith("torch-cpu-") and a != b and c == b


def test_a_load_tried_again_on_one_connection_is_counted_once(
    tmp_path: Path, module_path: Path
) -> None:
    (tmp_path / "broken.pt").write_bytes(b"not a TorchScript archive")
    with serving(TorchHost(str(tmp_path / "host.sock"), cpu_workers=2)) as host:
        connection = HostConnection.open(host.socket_path, wait_s=5)
        request = {"model": "x", "gpu": None, "inputs": ["INPUT__0", "INPUT__1"],
                   "outputs": [["OUTPUT__0", "<f4"], ["OUTPUT__1", "<f8"]]}  # fmt: skip
        with pytest.raises(HostError):
            connection.load({**request, "path": str(tmp_path / "broken.pt")})
        connection.load({**request, "path": str(module_path)})
        connection.close()
        _wait_until(lambda: host.hosted() == [])
        # The workers' counts decide where the next model goes: none may be left over.
        _wait_until(lambda: [worker.connections for worker in host._cpu] == [0, 0])


def test_close_stops_serving_at_once(tmp_path: Path) -> None:
    # A listening socket closed from another thread does not wake a blocked accept() on
    # Linux: the host's serving thread then outlived close().
    host = TorchHost(str(tmp_path / "host.sock"), cpu_workers=1)
    host.listen()
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    time.sleep(0.1)  # the thread is blocked in accept()
    host.close()
    thread.join(1.0)
    assert not thread.is_alive()
