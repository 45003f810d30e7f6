"""TorchServe run as a supervised child process, configured as the SageMaker toolkit does.

Java is started directly (not through the `torchserve` launcher script), so the JVM is our
child and every worker is its child: one process group holds them all and ends with them.
Each server gets its own temporary folder (`TEMP`/`TMPDIR`: the launcher's pid file, the
workers' Unix sockets `.ts.sock.<port>`) and its own log folder, so two servers on one machine
never share files; every port it opens is on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mme_local.runtime.base import free_port, wait_for_ping
from mme_local.runtime.errors import RuntimeExited, RuntimeFailure
from mme_local.runtime.gpus import visible_gpus
from mme_local.runtime.logs import read_log_tail
from mme_local.runtime.procs import descendants, die_with_parent, processes_in_group
from mme_local.runtime.torchserve_config import (
    LocalPorts,
    TorchServeSettings,
    jvm_arguments,
    local_properties,
    render_properties,
    sagemaker_environment,
)
from mme_local.runtime.torchserve_install import TorchServeInstall

log = logging.getLogger(__name__)

MAIN_CLASS = "org.pytorch.serve.ModelServer"
# Read by TorchServe through `enable_envvars_config`; installing per-model requirements at load
# needs a network, which a local endpoint must not depend on (lint warns about the file).
_DROPPED_VARIABLES = ("TS_INSTALL_PY_DEP_PER_MODEL",)


class EmbeddedTorchServe:
    """TorchServe's frontend (a JVM) and its Python workers, one worker set per model."""

    describe = "TorchServe"

    def __init__(
        self, install: TorchServeInstall, work_dir: Path, settings: TorchServeSettings
    ) -> None:
        self.install = install
        self.work_dir = work_dir
        self.settings = settings
        self.log_path = work_dir / "torchserve.log"
        self._port = settings.port
        self._process: subprocess.Popen[bytes] | None = None
        self._temp_dir: Path | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeFailure("TorchServe has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def version(self) -> str | None:
        return self.install.version

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def properties(self, ports: LocalPorts) -> dict[str, str]:
        return local_properties(sagemaker_environment(self.settings), ports)

    def command(self, config_file: Path, properties: dict[str, str], temp_dir: Path) -> list[str]:
        """What the `torchserve --start` launcher would run, with our heap limit and no
        config snapshots (a restarted server starts empty, as a replaced container does)."""
        return [
            str(self.install.java),
            *jvm_arguments(self.settings, properties),
            f"-Dmodel_server_home={self.install.home}",
            f"-Djava.io.tmpdir={temp_dir}",
            "-cp",
            self.install.class_path,
            MAIN_CLASS,
            "--python",
            str(self.install.python),
            "-f",
            str(config_file),
            "-s",
            properties.get("model_store", "/"),
            "-ncs",
        ]

    def environment(self, temp_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARIABLES}
        logs = str(self.work_dir / "logs")
        env.update(
            {
                "TEMP": str(temp_dir),
                "TMPDIR": str(temp_dir),
                "LOG_LOCATION": logs,
                "METRICS_LOCATION": logs,
                # Workers find this environment's packages through its interpreter.
                "PATH": f"{self.install.python.parent}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        env.update(sagemaker_environment(self.settings))
        return env

    async def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Short and private: Unix socket paths are limited to 108 bytes.
        self._temp_dir = temp_dir = Path(tempfile.mkdtemp(prefix="mme-ts-"))
        try:
            self._launch(temp_dir)
            await self._wait_ready()
        except BaseException:
            await self.stop()  # also removes the temporary folder
            raise

    def _launch(self, temp_dir: Path) -> None:
        self._port = self.settings.port or free_port()
        ports = LocalPorts(self._port, free_port(), free_port(), free_port())
        properties = self.properties(ports)
        config_file = self.work_dir / "config.properties"
        config_file.write_text(render_properties(properties), encoding="utf-8")
        command = self.command(config_file, properties, temp_dir)
        log.info("starting %s", " ".join(command))
        self._stopping = False
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.environment(temp_dir),
                cwd=self.work_dir,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def _wait_ready(self) -> None:
        timeout_s = self.settings.startup_timeout_s
        if await wait_for_ping(self.url, timeout_s, self.check_alive):
            log.info("TorchServe %s ready at %s", self.version, self.url)
            return
        raise RuntimeFailure(
            f"TorchServe did not answer /ping within {timeout_s:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        process = self._process
        if process is None or self._stopping:
            return
        returncode = process.poll()
        if returncode is not None:
            raise RuntimeExited(returncode, self.log_tail(), server="TorchServe (java)")

    @property
    def open_port(self) -> int | None:
        return None  # every address in its configuration is 127.0.0.1

    @property
    def uses_gpus(self) -> bool:
        return bool(visible_gpus())

    def process_ids(self) -> list[int]:
        if self._process is None or self._process.poll() is not None:
            return []
        return [self._process.pid, *descendants(self._process.pid)]

    def model_process_ids(self, model_name: str) -> list[int] | None:
        """The model's worker processes (and their children), as TorchServe describes them.

        Blocking: the cache calls it from a worker thread."""
        if self._port is None:
            return None
        quoted = urllib.parse.quote(model_name, safe="")
        try:
            with urllib.request.urlopen(f"{self.url}/models/{quoted}", timeout=5) as answer:
                described = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        versions = described if isinstance(described, list) else [described]
        pids = [
            int(worker["pid"])
            for version in versions
            if isinstance(version, dict)
            for worker in version.get("workers", [])
            if isinstance(worker, dict) and isinstance(worker.get("pid"), int) and worker["pid"] > 0
        ]
        return [*pids, *(child for pid in pids for child in descendants(pid))]

    def model_url(self, model_dir: Path) -> str:
        return str(model_dir)

    def log_tail(self, lines: int = 40) -> str:
        return read_log_tail(self.log_path, lines)

    @property
    def log_location(self) -> str:
        return str(self.log_path)

    async def stop(self) -> None:
        """SIGTERM to the JVM, SIGKILL after the grace period, then whatever is left of the
        group (workers of a JVM that was killed); the private temporary folder goes too."""
        process = self._process
        if process is not None:
            self._stopping = True
            group = process.pid
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + self.settings.stop_grace_s
                while process.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            await self._end_group(group)
            process.wait()
            self._process = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    async def _end_group(self, group: int) -> None:
        for _ in range(100):
            if not processes_in_group(group):
                return
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.05)
