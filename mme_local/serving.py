"""The one start-up path: the emulator behind uvicorn, for `up`, tests, benchmarks and the demo.

`EmulatorServer.serve()` starts the emulator, reports readiness, serves HTTP until told to
exit (Ctrl-C or `request_exit()`), then stops the emulator whatever happened.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import uvicorn

from mme_local.emulator import Emulator, Progress
from mme_local.gateway.app import create_app
from mme_local.gateway.http_protocol import limited_protocol
from mme_local.gateway.sigv4 import SigV4Verifier, require_sigv4
from mme_local.settings import EmulatorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the gateway's HTTP server."""

    max_header_bytes: int
    """Request line plus headers; more gets 431 and the connection is closed."""
    max_concurrency: int
    """Requests in progress at once; past it a request gets 503 (idle sockets don't count)."""
    keep_alive_timeout_s: float
    """A connection with no request in progress (new, or kept alive) is closed after this long."""
    header_timeout_s: float
    """A request's line and headers must arrive within this long of its first byte (else 408);
    its body may pause, and its client leave the answer unread, no longer than this (else the
    connection is closed)."""

    @classmethod
    def of(cls, settings: EmulatorSettings) -> HttpLimits:
        return cls(
            settings.header_limit_bytes,
            settings.max_concurrency,
            settings.keep_alive_timeout_s,
            settings.header_timeout_s,
        )


def uvicorn_config(app: object, host: str, port: int, limits: HttpLimits) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        # uvicorn's own limit counts sockets, idle ones included; the protocol counts
        # requests in progress instead.
        limit_concurrency=None,
        timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        # The emulator is started and stopped around serving, not by the ASGI lifespan.
        lifespan="off",
        http=limited_protocol(
            limits.max_header_bytes, limits.header_timeout_s, limits.max_concurrency
        ),
        loop="uvloop",
        timeout_graceful_shutdown=10,
        # Nothing sits in front of the gateway, and SageMaker sends neither header.
        proxy_headers=False,
        server_header=False,
    )


def exposure_warning(open_port: int | None) -> str | None:
    """What to tell the user about a Triton port this emulator cannot confine.

    Triton 2.51 binds its SageMaker port on every interface (it has no address flag) and
    asks for no credentials; the runtime says whether anything stands in front of it.
    """
    if open_port is None:
        return None
    return (
        f"Triton's SageMaker port {open_port} listens on every interface without "
        f"authentication: anyone who can reach this host on port {open_port} can load any "
        "folder of this host as a model, unload models, and invoke them past the 6 MB limit. "
        "Block the port with a firewall on a shared network (see Security in the README)."
    )


class PortUnavailable(OSError):
    """The gateway's address can't be bound; the text says why, without naming a flag."""


def check_port(host: str, port: int) -> None:
    """Bind and release (host, port) as uvicorn will, so a taken port is found before the
    store and Triton start rather than after. Port 0 (any free one) always passes."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn binds with SO_REUSEADDR too, so a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortUnavailable(
                    error.errno, f"{host}:{port} is already in use (another mme-local up?)"
                ) from None
            raise PortUnavailable(
                error.errno, f"cannot listen on {host}:{port} ({error.strerror})"
            ) from None


# What `timeout`, `docker stop`, IDE stop buttons and a closed terminal send.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class EmulatorServer:
    def __init__(
        self,
        settings: EmulatorSettings,
        progress: Progress | None = None,
        on_ready: Callable[[Emulator], None] | None = None,
    ) -> None:
        self.settings = settings
        self.emulator = Emulator(settings, progress)
        self.on_ready = on_ready
        app = create_app(lambda: self.emulator.gateway)
        if settings.require_sigv4 and settings.secret_access_key:
            verifier = SigV4Verifier(
                settings.access_key_id, settings.secret_access_key, settings.region
            )
            app = require_sigv4(app, verifier)
        config = uvicorn_config(app, settings.host, settings.port, HttpLimits.of(settings))
        self.http = uvicorn.Server(config)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def serving(self) -> bool:
        """True once the socket accepts connections."""
        return bool(self.http.started)

    async def serve(self) -> None:
        try:
            await self.emulator.start()
            for member in self.emulator.instances:
                warning = exposure_warning(member.server.open_port)
                if warning is not None:
                    log.warning("%s", warning)
            if self.on_ready is not None:
                self.on_ready(self.emulator)
            await self.http.serve()
        finally:
            await self.emulator.stop()

    def request_exit(self) -> None:
        """Ask `serve()` to finish (thread-safe: uvicorn polls the flag)."""
        self.http.should_exit = True

    @contextlib.contextmanager
    def stopping_on_signals(self, say: Callable[[str], None]) -> Iterator[None]:
        """Treat SIGTERM and SIGHUP like Ctrl-C while in this block (main thread only).

        Their default action kills the process at once, leaving Triton, its stubs and the
        temporary cache behind. While HTTP is served the signal asks uvicorn to shut down
        gracefully (uvicorn handles SIGTERM itself then, and re-sends it once it has stopped);
        at any other moment it raises KeyboardInterrupt, as SIGINT does, so the same clean-up
        runs.
        """

        def handle(signum: int, frame: FrameType | None) -> None:
            say(f"{signal.Signals(signum).name}: stopping, as on Ctrl-C")
            if self.serving and not self.http.should_exit:
                self.request_exit()
                return
            raise KeyboardInterrupt

        # A signal already ignored stays ignored: `nohup mme-local up` must survive a hang-up.
        previous = {
            signum: signal.signal(signum, handle)
            for signum in STOP_SIGNALS
            if signal.getsignal(signum) is not signal.SIG_IGN
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
