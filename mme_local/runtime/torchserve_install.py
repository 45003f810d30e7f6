"""Finding what the TorchServe stack runs: a Java runtime and the `torchserve` package.

TorchServe's frontend is a Java program (`ts/frontend/model-server.jar`); its workers are
Python processes of this environment. Java is a system package, so it is looked for, never
installed from here: `make` and `.ci/run` install Debian's `openjdk-17-jre-headless`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mme_local.runtime.errors import RuntimeFailure

JAVA_HINT = (
    "TorchServe needs a Java 17 runtime: `sudo apt-get install openjdk-17-jre-headless` "
    "(Debian/Ubuntu; `make test` does it), or set JAVA_HOME"
)
PACKAGE_HINT = "TorchServe is not installed here: pip install 'mme-local[torchserve]'"


@dataclass(frozen=True)
class TorchServeInstall:
    java: Path
    home: Path
    """The folder holding the `ts` package (TorchServe's `model_server_home`)."""
    python: Path
    """The interpreter the workers run in: this environment's, which has torch."""
    version: str

    @property
    def class_path(self) -> str:
        return str(self.home / "ts" / "frontend" / "*")


def find_java(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java", path=env.get("PATH"))
    if found is None:
        raise RuntimeFailure(JAVA_HINT)
    return Path(found)


def find_install() -> TorchServeInstall:
    spec = importlib.util.find_spec("ts")
    if spec is None or spec.origin is None:
        raise RuntimeFailure(PACKAGE_HINT)
    package = Path(spec.origin).parent
    if not (package / "frontend" / "model-server.jar").is_file():
        raise RuntimeFailure(f"{PACKAGE_HINT} (no ts/frontend/model-server.jar in {package})")
    try:
        version = (package / "version.txt").read_text(encoding="utf-8").strip()
    except OSError:
        version = "unknown"
    return TorchServeInstall(find_java(), package.parent, Path(sys.executable), version)
