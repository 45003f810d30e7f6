"""What a user sees when a command fails: one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mme_local.runtime.base import free_port

CLI = str(Path(sys.executable).parent / "mme-local")


def test_an_unreachable_endpoint_is_one_line_without_a_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [CLI, "models", "--endpoint-url", url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"no mme-local endpoint answers at {url}" in result.stderr


def test_a_bad_setting_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "up", "--runtime", "podman"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --runtime: unknown runtime 'podman'; choose one of: embedded, docker, external"
    )
