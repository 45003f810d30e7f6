"""Lay out the backend directory the embedded Triton runs with.

It holds the Python backend (from the Triton install, with the stub that embeds the running
Python) and mme-local's own Python-based backends (package data, e.g. `pytorch`).
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


class StubNotFound(RuntimeError):
    """The Triton install has no Python backend stub for the running Python."""


def _place(source: Path, target: Path) -> None:
    """Copy (not symlink: Triton refuses backend files that resolve outside the directory)."""
    if target.is_symlink():
        target.unlink()
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return
    shutil.copy2(source, target)


def site_directories() -> list[str]:
    """This environment's package folders (a venv's, when running in one)."""
    found = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return list(dict.fromkeys(path for path in found if path))


# The stub embeds Python with an isolated path (PYTHONPATH is ignored) and imports this module
# before any model, so a prelude here is where this environment's packages become visible.
_PRELUDE = """\
# Prepended by mme-local: make the running environment's packages visible to the stub.
import site as _mme_site
import sys as _mme_sys

_mme_before = list(_mme_sys.path)
for _mme_dir in {site_dirs!r}:
    _mme_site.addsitedir(_mme_dir)
_mme_sys.path[:] = [p for p in _mme_sys.path if p not in _mme_before] + _mme_before
del _mme_site, _mme_sys, _mme_before, _mme_dir
# End of mme-local prelude.

"""


def _write_backend_utils(source: Path, target: Path) -> None:
    original = source.read_text()
    content = _PRELUDE.format(site_dirs=site_directories()) + original
    if not target.is_file() or target.read_text() != content:
        target.write_text(content)


def prepare_backend_dir(install: TritonInstall, target: Path) -> Path:
    """Build `target` as a `--backend-directory` and return it."""
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    _place(install.python_backend_dir / "libtriton_python.so", python_dir / "libtriton_python.so")
    _write_backend_utils(
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
    return target


def python_environment(install: TritonInstall) -> dict[str, str]:
    """Environment that makes the stub load this process's libpython (not another 3.X's)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [libdir, *(str(path) for path in install.library_dirs)]
    existing = os.environ.get("LD_LIBRARY_PATH")
    if existing:
        library_path.append(existing)
    return {"LD_LIBRARY_PATH": os.pathsep.join(path for path in library_path if path)}
