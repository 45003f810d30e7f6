"""A Triton from 2.70 on loads only /opt/ml/models/<hash>/model: the embedded runtime refuses
it at start with one line, before any load could fail with a 400."""

from __future__ import annotations

from pathlib import Path

import pytest

from mme_local.runtime import provision
from mme_local.runtime.provision import UnsupportedTriton, check_load_paths


def _triton_home(root: Path, version: str) -> Path:
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / "tritonserver"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    (root / "TRITON_VERSION").write_text(version + "\n")
    return root


@pytest.mark.parametrize("version", ["2.70.0", "2.71.0dev", "3.0.1"])
def test_newer_triton_is_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    home = _triton_home(tmp_path / "triton", version)
    monkeypatch.setenv(provision.TRITON_HOME_ENV, str(home))
    with pytest.raises(UnsupportedTriton) as raised:
        provision.ensure()
    message = str(raised.value)
    assert "\n" not in message
    assert f"tritonserver {version}" in message
    assert "/opt/ml/models/<hash>/model" in message
    assert "--runtime docker" in message


@pytest.mark.parametrize("version", ["2.51.0", "2.69.1", None, "unknown"])
def test_older_or_unknown_versions_pass(version: str | None) -> None:
    check_load_paths(version, "/x/tritonserver")


def test_version_is_read_from_a_container_layout(tmp_path: Path) -> None:
    home = _triton_home(tmp_path / "triton", "2.50.0")
    assert provision.inspect(home, "explicit path").version == "2.50.0"
