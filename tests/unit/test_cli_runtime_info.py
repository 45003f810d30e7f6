"""`mme-local runtime info` when Triton is missing or MME_LOCAL_TRITON_HOME is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "mme-local")


def _info(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "runtime", "info"], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MME_LOCAL_TRITON_HOME",)}
    env.pop("MME_LOCAL_CACHE", None)
    env.pop("XDG_CACHE_HOME", None)
    # No tritonserver on PATH: only the venv's and the system's tools.
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return {**env, "HOME": str(home), **extra}


def test_no_triton_names_every_place_looked_and_the_variable(tmp_path: Path) -> None:
    result = _info(_env(tmp_path), tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Triton not found")
    assert "MME_LOCAL_TRITON_HOME" in result.stderr and "mme-local runtime install" in result.stderr


def test_a_triton_home_without_tritonserver_names_the_variable(tmp_path: Path) -> None:
    result = _info(_env(tmp_path, MME_LOCAL_TRITON_HOME=str(tmp_path / "nope")), tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"error: $MME_LOCAL_TRITON_HOME: {tmp_path / 'nope'} holds no tritonserver"
    )


def test_a_triton_home_without_the_python_stub_fails(tmp_path: Path) -> None:
    # The server's own folder: a tritonserver but none of the Python backend stubs beside it.
    home = tmp_path / "tritonserver"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "tritonserver").write_text("#!/bin/sh\nexit 1\n")
    (home / "bin" / "tritonserver").chmod(0o755)
    (home / "backends" / "python").mkdir(parents=True)
    result = _info(_env(tmp_path, MME_LOCAL_TRITON_HOME=str(home)), tmp_path)
    assert result.returncode == 1
    assert "has no Triton Python backend stub" in result.stderr
    assert "point $MME_LOCAL_TRITON_HOME at the folder that holds pytriton/" in result.stderr
