"""The GPU bundle's layout: what of Triton it takes, how it splits into transfers, staging."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from bench.gpu_bundle import (
    MANIFEST,
    TRITON_ARCHIVE,
    BundleError,
    assemble,
    pack_parts,
    read_parts,
    stage,
    triton_members,
)


def _fake_pytriton(home: Path) -> Path:
    files = [
        "pytriton/tritonserver/bin/tritonserver",
        "pytriton/tritonserver/backends/python/libtriton_python.so",
        "pytriton/tritonserver/backends/python/triton_python_backend_utils.py",
        "pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub",
        "pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub",
        "nvidia_pytriton.libs/libtritonserver-1.so",
        "nvidia_pytriton.libs/libpython3-2.13.so.1.0",
        "mme-local-runtime.json",
    ]
    for name in files:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_bytes(name.encode())
    return home


def test_the_triton_subset_keeps_one_stub_and_drops_the_wheels_own_libpython(
    tmp_path: Path,
) -> None:
    chosen = {str(p) for p in triton_members(_fake_pytriton(tmp_path), "3.12")}

    assert "pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub" in chosen
    assert not any("3.11" in name or "libpython" in name for name in chosen)
    assert "nvidia_pytriton.libs/libtritonserver-1.so" in chosen
    assert "pytriton/tritonserver/bin/tritonserver" in chosen


def test_a_tree_without_the_python_s_stub_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no Python backend stub for Python 3\.10"):
        triton_members(_fake_pytriton(tmp_path), "3.10")


def test_parts_stay_under_the_limit_and_keep_every_file() -> None:
    sizes = {"a": 50, "b": 40, "c": 30, "d": 20, "e": 10}

    parts = pack_parts(sizes, limit=60)

    assert all(sum(sizes[n] for n in part) <= 60 for part in parts)
    assert sorted(n for part in parts for n in part) == sorted(sizes)
    assert len(parts) == 3


def test_a_file_bigger_than_one_transfer_is_refused() -> None:
    with pytest.raises(BundleError, match="over one transfer's limit"):
        pack_parts({"huge": 61}, limit=60)


def _bundle(tmp_path: Path, limit: int) -> Path:
    source = tmp_path / "source"
    home = _fake_pytriton(source / "home")
    archive = source / TRITON_ARCHIVE
    with tarfile.open(archive, "w:xz") as tar:
        for relative in triton_members(home, "3.12"):
            tar.add(home / relative, arcname=str(relative))
    wheels = []
    for name in ("pip-1-py3-none-any.whl", "numpy-1.26.4-cp312-cp312-x.whl"):
        wheels.append(source / name)
        wheels[-1].write_bytes(b"w" * 300)
    out = tmp_path / "bundle"
    assemble([archive, *wheels], out, "3.12", limit=limit)
    return out


def test_a_bundle_split_in_parts_is_staged_in_order(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, limit=1000)

    manifests = read_parts(bundle)
    staged = stage(bundle, tmp_path / "staged")

    assert [m["part"] for m in manifests] == list(range(1, len(manifests) + 1))
    assert len(manifests) >= 2
    assert all(int(str(m["bytes"])) <= 1000 for m in manifests)
    assert (staged.triton_home / "pytriton/tritonserver/bin/tritonserver").is_file()
    assert sorted(w.name for w in staged.wheels) == [
        "numpy-1.26.4-cp312-cp312-x.whl",
        "pip-1-py3-none-any.whl",
    ]
    assert staged.python == "3.12"


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, limit=1000)
    last = max(bundle.glob("part-*"))
    (last / MANIFEST).unlink()

    with pytest.raises(BundleError, match=r"lacks part\(s\) \[\d+\]"):
        read_parts(bundle)


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, limit=10_000)
    manifest = json.loads((bundle / "part-1" / MANIFEST).read_text())
    victim = bundle / "part-1" / manifest["files"][0]["name"]
    victim.write_bytes(b"changed")

    with pytest.raises(BundleError, match="missing or damaged; copy part 1 again"):
        stage(bundle, tmp_path / "staged")
