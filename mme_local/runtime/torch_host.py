"""The torch host: one process per embedded Triton holding every TorchScript module.

The cloud's Triton runs `pytorch_libtorch` models inside its own process through libtorch;
the embedded Triton has no libtorch backend, so its `pytorch` backend is a Python-based one
whose per-model stub would otherwise import torch itself (≈250 MiB and ≈2.5 s per model).
Instead every stub is a thin client of this host (see `backends/pytorch/model.py` and
`torch_host_wire.py`): torch is imported once here, each model instance is one connection
served by its own thread, and closing the connection frees the module.

Calls of different models run at the same time: there is no lock around inference (torch
releases the GIL in its kernels); the one lock here guards the table of loaded modules. GPU
models run on their connection's thread. CPU models run on a few inference threads
(`--cpu-workers`, default one per four cores, at least one): every thread that runs a CPU op
gets an OpenMP team of its own, and with a team per model every call was slower by a third on
a 2-core machine (MiniLM, 9.8 ms at p50 against 7.2 ms in a stub of its own), so CPU loads and
calls share a few teams, each using all the cores. A CPU model is loaded by the worker with the
fewest models, which then waits on that model's socket itself and answers its calls.

    python -m mme_local.runtime.torch_host --socket PATH
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import itertools
import logging
import os
import queue
import re
import selectors
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mme_local.runtime.torch_host_wire import (
    Area,
    Header,
    HostGone,
    cut,
    grown,
    needed,
    receive,
    send,
)

log = logging.getLogger(__name__)

_INDEXED = re.compile(r"^(?:INPUT|OUTPUT)__(\d+)$")

Loader = Callable[[str, torch.device], Any]
"""Loads the module at a path onto a device (torch.jit.load; tests pass their own)."""


def jit_loader(path: str, device: torch.device) -> Any:
    module = torch.jit.load(path, map_location=device)  # type: ignore[no-untyped-call]
    module.eval()
    return module


def positional_order(names: list[str], forward_args: list[str]) -> list[str]:
    """Order config tensor names the way libtorch's backend binds them to forward()."""
    indexed = [_INDEXED.match(name) for name in names]
    if all(indexed):
        return sorted(names, key=lambda name: int(_INDEXED.match(name).group(1)))  # type: ignore[union-attr]
    if set(names) <= set(forward_args):
        return sorted(names, key=forward_args.index)
    return names


def forward_argument_names(module: Any) -> list[str]:
    try:
        arguments = module.forward.schema.arguments
    except (AttributeError, RuntimeError):
        return []
    return [argument.name for argument in arguments if argument.name != "self"]


def tensor_bytes(module: Any) -> tuple[int, int]:
    """Bytes of the module's parameters and buffers (each storage once): (host, GPU)."""
    host = gpu = 0
    seen: set[tuple[str, int]] = set()
    try:
        tensors = itertools.chain(module.parameters(), module.buffers())
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = (str(tensor.device), storage.data_ptr())
            if key in seen:
                continue
            seen.add(key)
            if tensor.device.type == "cpu":
                host += storage.nbytes()
            else:
                gpu += storage.nbytes()
    except (AttributeError, RuntimeError):
        pass
    return host, gpu


def pick_device(gpu: int | None) -> torch.device:
    """KIND_GPU -> that GPU where torch sees one, else (and for KIND_CPU) the CPU."""
    if gpu is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{gpu}")
    return torch.device("cpu")


def _release_memory(device: torch.device) -> None:
    """Give a freed module's memory back: to the OS on the host, to the driver on a GPU."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


@dataclass
class Hosted:
    """One loaded model instance."""

    model: str
    """Triton's name for it (the TargetModel, on the SageMaker front end)."""
    path: str
    """The module file, in the model's folder of the cache."""
    device: str
    host_bytes: int
    gpu_bytes: int


class _Instance:
    """The module behind one connection and how to call it."""

    def __init__(self, module: Any, device: torch.device, request: Header) -> None:
        self.module = module
        self.device = device
        self.input_names = positional_order(list(request["inputs"]), forward_argument_names(module))
        self.outputs: list[tuple[str, np.dtype[Any]]] = [
            (name, np.dtype(dtype)) for name, dtype in request["outputs"]
        ]

    def run(self, inputs: list[torch.Tensor]) -> list[np.ndarray[Any, Any]]:
        with torch.inference_mode():
            result = self.module(*[tensor.to(self.device) for tensor in inputs])
        if isinstance(result, torch.Tensor):
            values: list[torch.Tensor] = [result]
        elif isinstance(result, dict):
            values = list(result.values())
        else:
            values = list(result)
        arrays = []
        for position, (name, dtype) in enumerate(self.outputs):
            match = _INDEXED.match(name)
            index = int(match.group(1)) if match else position
            array = values[index].detach().cpu().numpy()
            arrays.append(np.ascontiguousarray(array.astype(dtype)))
        return arrays


def default_cpu_workers() -> int:
    return max(1, (os.cpu_count() or 1) // 4)


class _Connection:
    """One stub's connection: the model instance it holds and its shared area."""

    def __init__(self, sock: socket.socket, key: int) -> None:
        self.sock = sock
        self.key = key
        self.instance: _Instance | None = None
        self.area: Area | None = None
        self.worker: _CpuWorker | None = None
        """The CPU inference thread that loaded its module and answers its calls."""


class _CpuWorker:
    """A CPU inference thread: it runs the loads it is given and answers the calls of the CPU
    models it loaded, waiting on their sockets itself, so a call wakes no other thread of the
    host on its way (handing each call over from its connection's thread cost MiniLM 0.16 to
    0.33 ms at p50). One OpenMP team per worker, whatever the number of models."""

    def __init__(
        self,
        name: str,
        serve_one: Callable[[_Connection], bool],
        finish: Callable[[_Connection], None],
    ) -> None:
        self._serve_one = serve_one
        self._finish = finish
        self._selector = selectors.DefaultSelector()
        self._tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self.connections = 0
        """CPU models it serves or is loading (the host's lock guards it)."""
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def call(self, task: Callable[[], Any]) -> Any:
        """Run `task` on this worker's thread and return its result (or raise its error)."""
        future: Future[Any] = Future()
        self._tasks.put((task, future))
        self._wake_write.send(b"\0")
        return future.result()

    def adopt(self, connection: _Connection) -> None:
        """Answer this connection's messages from now on (from this worker's thread)."""
        self.call(
            lambda: self._selector.register(connection.sock, selectors.EVENT_READ, connection)
        )

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _run(self) -> None:
        while not self._stopping:
            for selected, _ in self._selector.select():
                connection = selected.data
                try:
                    if connection is None:
                        self._run_tasks()
                    elif not self._serve_one(connection):
                        self._selector.unregister(connection.sock)
                        self._finish(connection)
                except Exception:  # the worker must outlive any one model's failure
                    log.exception("torch host CPU worker")

    def _run_tasks(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass
        while True:
            try:
                task, future = self._tasks.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(task())
            except BaseException as error:
                future.set_exception(error)


class TorchHost:
    def __init__(
        self, socket_path: str, loader: Loader = jit_loader, cpu_workers: int | None = None
    ) -> None:
        self.socket_path = socket_path
        self.loader = loader
        self._lock = threading.Lock()
        self._cpu = [
            _CpuWorker(f"torch-cpu-{n}", self._serve_one, self._finish)
            for n in range(cpu_workers or default_cpu_workers())
        ]
        self._hosted: dict[int, Hosted] = {}
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None

    def hosted(self) -> list[Hosted]:
        with self._lock:
            return list(self._hosted.values())

    def listen(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(self.socket_path)
        listener.listen(256)
        self._listener = listener

    def serve_forever(self) -> None:
        if self._listener is None:
            self.listen()
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed by close()
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def close(self) -> None:
        for worker in self._cpu:
            worker.stop()
        if self._listener is not None:
            # Closing alone does not wake a thread blocked in accept() on Linux; shutting
            # the socket down does (accept raises, and serve_forever returns).
            with contextlib.suppress(OSError):  # never listened, or already shut
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _serve(self, sock: socket.socket) -> None:
        """A connection's own thread: its messages until its module is loaded; then a CPU
        model's go to the worker that loaded it, a GPU model's stay here."""
        connection = _Connection(sock, next(self._ids))
        while self._serve_one(connection):
            worker = connection.worker
            if worker is not None and connection.instance is not None:
                worker.adopt(connection)
                return
        self._finish(connection)

    def _serve_one(self, connection: _Connection) -> bool:
        """Answer one message; False once the connection is over (`_finish` it then)."""
        try:
            header, fds = receive(connection.sock)
            if fds:
                if connection.area is not None:
                    connection.area.close()
                connection.area = Area(fds[0], int(header["area"]))
            self._answer(connection, header)
            return True
        except HostGone:
            pass
        except Exception:
            log.exception("torch host connection failed")
        return False

    def _answer(self, connection: _Connection, header: Header) -> None:
        op = header.get("op")
        try:
            if op == "stats":
                # Filtered here, so that one answer stays small with hundreds loaded.
                within = str(header.get("path_contains", ""))
                held = [vars(h) for h in self.hosted() if within in h.path]
                send(connection.sock, {"models": held})
            elif op == "load" and connection.instance is None:
                connection.instance = self._load(connection, header)
                send(connection.sock, {"inputs": connection.instance.input_names})
            elif op == "infer" and connection.instance is not None and connection.area:
                connection.area = self._infer(connection, connection.instance, header)
            else:
                send(connection.sock, {"error": f"unexpected message {op!r}"})
        except HostGone:
            raise
        except Exception as error:  # torch's own text goes back unchanged
            send(connection.sock, {"error": cut(str(error))})

    def _finish(self, connection: _Connection) -> None:
        connection.sock.close()
        if connection.worker is not None:
            with self._lock:
                connection.worker.connections -= 1
            connection.worker = None
        if connection.area is not None:
            connection.area.close()
        with self._lock:
            gone = self._hosted.pop(connection.key, None)
        instance, connection.instance = connection.instance, None
        if instance is not None:
            device = instance.device
            del instance
            _release_memory(device)
            if gone is not None:
                log.info("unloaded %s", gone.model)

    def _load(self, connection: _Connection, request: Header) -> _Instance:
        gpu = request.get("gpu")
        device = pick_device(None if gpu is None else int(gpu))
        path = str(request["path"])
        if device.type == "cpu":
            # On a CPU worker, the one that will answer its calls: loading copies tensors
            # with OpenMP, which would give this connection's thread a team of its own.
            worker = connection.worker  # a load tried again stays where it was counted
            if worker is None:
                with self._lock:
                    worker = min(self._cpu, key=lambda w: w.connections)
                    worker.connections += 1
                connection.worker = worker
            module = worker.call(lambda: self.loader(path, device))
        else:
            module = self.loader(path, device)
        instance = _Instance(module, device, request)
        host_bytes, gpu_bytes = tensor_bytes(module)
        hosted = Hosted(str(request["model"]), path, str(device), host_bytes, gpu_bytes)
        with self._lock:
            self._hosted[connection.key] = hosted
        log.info("loaded %s on %s (%d MiB)", hosted.model, device, (host_bytes + gpu_bytes) >> 20)
        return instance

    def _infer(self, connection: _Connection, instance: _Instance, header: Header) -> Area:
        area = connection.area
        assert area is not None
        # Views of the shared area: the inputs are read in place, never copied here. A CPU
        # model's call already runs on its worker's thread; a GPU model's on its own.
        inputs = [torch.from_numpy(area.view(described)) for described in header["inputs"]]
        outputs = instance.run(inputs)
        del inputs
        fds: list[int] = []
        wanted = needed(outputs)
        if wanted > area.size:
            replacement = Area.create(grown(area.size, wanted))
            area.close()
            area = replacement
            fds = [area.fd]
        described = area.write(outputs)
        send(connection.sock, {"outputs": described, "area": area.size}, fds)
        return area


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hold TorchScript modules for Triton's stubs.")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument(
        "--cpu-workers",
        type=int,
        default=default_cpu_workers(),
        help="threads running CPU models' calls (default: one per four cores, at least one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s torch-host %(message)s")
    host = TorchHost(args.socket, cpu_workers=args.cpu_workers)

    def leave(signum: int, frame: object) -> None:
        # SIGTERM comes from mme-local's stop, or from the kernel when mme-local died without
        # one: either way leave no socket (nor its private folder, once empty) behind.
        host.close()
        with contextlib.suppress(OSError):
            os.unlink(args.socket)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(args.socket))
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    host.listen()
    log.info("torch %s listening on %s (pid %d)", torch.__version__, args.socket, os.getpid())
    host.serve_forever()


if __name__ == "__main__":
    main()
