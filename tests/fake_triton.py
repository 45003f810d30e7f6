"""A stand-in tritonserver for runtime tests that need a process, not a model server.

It prints Triton's start-up banner (with the version it is told to claim), answers 200 to
every GET on `--sagemaker-port` (`/ping`), and runs until killed. It starts in milliseconds,
so start, restart and version rules can be tested without the real binary.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mme_local.runtime.provision import TritonInstall

_SCRIPT = """#!{python}
import http.server
import sys
import time

print("I1203 00:00:00.000000 1 server.cc:1] starting", flush=True)
print("| Option         | Value |", flush=True)
print("| server_version | {version} |", flush=True)
ports = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--sagemaker-port=")]
if not ports:
    time.sleep(3600)


class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(ports[0])), Ping).serve_forever()
"""


def fake_install(root: Path, version: str, recorded_version: str | None = None) -> TritonInstall:
    """A Triton home whose binary claims `version`; `recorded_version` is what a marker or
    TRITON_VERSION file would say (None: nothing says, so only the binary can tell)."""
    python_dir = root / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (python_dir / name).write_bytes(b"")
    stub = python_dir / "triton_python_backend_stub"
    stub.write_bytes(b"")
    stub.chmod(0o755)
    binary = root / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(_SCRIPT.format(python=sys.executable, version=version))
    binary.chmod(0o755)
    return TritonInstall(
        home=root,
        binary=binary,
        library_dirs=(),
        python_backend_dir=python_dir,
        stubs_dir=None,
        source="test",
        version=recorded_version,
    )
