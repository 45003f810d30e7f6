"""Lay out the backend directory the embedded Triton runs with.

It holds the Python backend (from the Triton install, with the stub that embeds the running
Python) and mme-local's own Python-based backends (package data, e.g. `pytorch`, with the
torch host's wire module beside it).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from importlib import resources
from pathlib import Path

from mme_local.runtime.provision import TritonInstall

_OWN_BACKENDS = ("pytorch",)
# Modules of mme_local that a backend's model.py imports from its own folder (the stub
# ignores PYTHONPATH and must not import torch through mme_local).
_BESIDE_BACKEND = {"pytorch": ("torch_host_wire.py",)}


class StubNotFound(RuntimeError):
    """The Triton install has no Python backend stub for the running Python."""


def _place(source: Path, target: Path) -> None:
    """Copy (not symlink: Triton refuses backend files that resolve outside the directory)."""
    if target.is_symlink():
        target.unlink()
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    shutil.copy2(source, target)


def prepare_backend_dir(install: TritonInstall, target: Path) -> Path:
    """Build `target` as a `--backend-directory` and return it."""
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    _place(install.python_backend_dir / "libtriton_python.so", python_dir / "libtriton_python.so")
    _place(
        install.python_backend_dir / "triton_python_backend_utils.py",
        python_dir / "triton_python_backend_utils.py",
    )
    stub = install.stub_for(sys.version_info[:2])
    if stub is None:
        have = ", ".join(install.available_stubs()) or "none"
        raise StubNotFound(
            f"Triton at {install.home} has no Python backend stub for Python "
            f"{sys.version_info[0]}.{sys.version_info[1]} (it has: {have}); "
            "use Python 3.10-3.12 or build the stub for this Python"
        )
    if stub.parent != python_dir:
        _place(stub, python_dir / "triton_python_backend_stub")
    package = resources.files("mme_local.runtime") / "backends"
    for name in _OWN_BACKENDS:
        backend = target / name
        backend.mkdir(parents=True, exist_ok=True)
        with resources.as_file(package / name / "model.py") as source:
            shutil.copyfile(source, backend / "model.py")
        for module in _BESIDE_BACKEND.get(name, ()):
            with resources.as_file(resources.files("mme_local.runtime") / module) as source:
                shutil.copyfile(source, backend / module)
    return target


def python_environment(install: TritonInstall) -> dict[str, str]:
    """Environment that makes the stub embed this process's Python, venv included.

    The stub loads libpython through LD_LIBRARY_PATH (this Python's LIBDIR first, not another
    3.X on the system), and the embedded interpreter finds its executable by searching PATH
    for `python3`: with this environment's bin folder first it picks up the venv's
    pyvenv.cfg, hence its site-packages (numpy < 2, torch). PYTHONPATH is ignored there.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [libdir, *(str(path) for path in install.library_dirs)]
    bin_path = [str(Path(sys.executable).parent)]
    for name, extra in (("LD_LIBRARY_PATH", library_path), ("PATH", bin_path)):
        existing = os.environ.get(name)
        if existing:
            extra.append(existing)
    return {
        "LD_LIBRARY_PATH": os.pathsep.join(path for path in library_path if path),
        "PATH": os.pathsep.join(bin_path),
    }
