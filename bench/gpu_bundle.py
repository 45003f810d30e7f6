"""Build, here, what an air-gapped GPU host lacks to run `bench/gpu_check.py`; stage it there.

The bundle is a folder of parts (`part-1/`, `part-2/`, ...), each small enough for one
transfer, each with a `manifest.json` naming its files with sizes and sha256. It holds:

- `triton-runtime.tar.xz`: the Triton tree the embedded runtime uses (server binary, its
  libraries, the Python backend and the stub for one Python only);
- `wheels/`: numpy < 2 for that Python (the stub needs it), mme-local itself, pip, and the
  pure-Python (or binary) dependencies the check imports that such a host does not have.

    .venv/bin/python bench/gpu_bundle.py [--out gpu-bundle] [--python 3.12]

Only the standard library is imported, so the host's own Python can stage a bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
# One transfer carries at most 64 MiB; the margin leaves room for the manifest and rounding.
PART_LIMIT_BYTES = 60 * MiB
TRITON_ARCHIVE = "triton-runtime.tar.xz"
MANIFEST = "manifest.json"
BUNDLE_FORMAT = 1

# What the check imports that a host with torch, numpy 2, aiohttp, httpx, uvloop, rich, typer,
# prometheus-client, requests and psutil lacks (pip adds their own dependencies).
HOST_LACKS = (
    "boto3", "moto", "flask", "flask-cors", "starlette", "uvicorn", "httptools", "docker",
)  # fmt: skip
# The stub reads numpy < 2 from the environment it embeds; pip installs the other wheels.
EXTRA_WHEELS = ("numpy>=1.24,<2", "pip")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")


class BundleError(RuntimeError):
    """The bundle cannot be built or staged as asked."""


def triton_members(home: Path, python: str) -> list[Path]:
    """Files of a provisioned pytriton tree that the embedded runtime uses, relative to `home`.

    Other Pythons' stubs and the wheel's own libpython (the stub embeds the host's) are left out.
    """
    chosen: list[Path] = []
    for path in sorted(home.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(home)
        parts = relative.parts
        if "python_backend_stubs" in parts:
            if parts[parts.index("python_backend_stubs") + 1] != python:
                continue
        elif relative.parent.name == "nvidia_pytriton.libs" and path.name.startswith("libpython"):
            continue
        chosen.append(relative)
    if not any(p.name == "tritonserver" for p in chosen):
        raise BundleError(f"{home} holds no tritonserver; run `make runtime` first")
    if not any("python_backend_stubs" in p.parts for p in chosen):
        raise BundleError(f"{home} has no Python backend stub for Python {python}")
    return chosen


def write_triton_archive(home: Path, dest: Path, python: str) -> Path:
    """`dest/triton-runtime.tar.xz` (xz preset 1: a third of the size of gzip's, in seconds)."""
    archive = dest / TRITON_ARCHIVE
    with tarfile.open(archive, "w:xz", preset=1) as tar:
        for relative in triton_members(home, python):
            tar.add(home / relative, arcname=str(relative), recursive=False)
    return archive


def download_wheels(dest: Path, python: str) -> list[Path]:
    """Wheels for CPython `python` on x86-64 Linux: the host-lacking set, with dependencies."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", *platforms,
        "-d", str(dest), *HOST_LACKS, *EXTRA_WHEELS,
    ]  # fmt: skip
    _run(command, "pip could not download the wheels; check access to the package index")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(dest), str(ROOT)],
        "pip could not build mme-local's wheel; run `make .venv/bin/mme-local` first",
    )  # fmt: skip
    return sorted(dest.glob("*.whl"))


def _run(command: list[str], failure: str) -> None:
    result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if result.returncode != 0:
        raise BundleError(f"{failure} (exit {result.returncode})")


def pack_parts(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Group files into as few parts as first-fit-decreasing finds, each at most `limit` bytes."""
    parts: list[list[str]] = []
    room: list[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        size = sizes[name]
        if size > limit:
            raise BundleError(f"{name} is {size / MiB:.1f} MiB, over one transfer's limit")
        for index, free in enumerate(room):
            if size <= free:
                parts[index].append(name)
                room[index] -= size
                break
        else:
            parts.append([name])
            room.append(limit - size)
    return parts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble(
    files: list[Path], out: Path, python: str, limit: int = PART_LIMIT_BYTES
) -> list[Path]:
    """Lay `files` out under `out` as part folders with manifests; returns the part folders."""
    by_name = {
        (f"wheels/{f.name}" if f.suffix == ".whl" else f.name): f for f in files
    }  # fmt: skip
    groups = pack_parts({name: path.stat().st_size for name, path in by_name.items()}, limit)
    if out.exists():
        shutil.rmtree(out)
    folders = []
    for number, names in enumerate(groups, start=1):
        folder = out / f"part-{number}"
        entries: list[dict[str, object]] = []
        for name in sorted(names):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(by_name[name], target)
            size = target.stat().st_size
            entries.append({"name": name, "bytes": size, "sha256": _sha256(target)})
        manifest = {
            "format": BUNDLE_FORMAT, "python": python, "part": number, "parts": len(groups),
            "bytes": sum(int(str(e["bytes"])) for e in entries), "files": entries,
        }  # fmt: skip
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        folders.append(folder)
    return folders


def build(out: Path, home: Path, python: str, limit: int = PART_LIMIT_BYTES) -> list[Path]:
    """Build the whole bundle into `out` (replacing it); returns the part folders."""
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        print(f"packing the Triton subset from {home}", file=sys.stderr)
        archive = write_triton_archive(home, scratch, python)
        print(f"downloading wheels for CPython {python}", file=sys.stderr)
        wheels = download_wheels(scratch / "wheels", python)
        return assemble([archive, *wheels], out, python, limit)


@dataclass(frozen=True)
class Staged:
    triton_home: Path
    wheels: list[Path]
    python: str


def read_parts(bundle: Path) -> list[dict[str, object]]:
    """The manifests of `bundle/part-*`, in order, after checking that every part is there."""
    manifests = []
    for manifest_path in sorted(bundle.glob(f"part-*/{MANIFEST}")):
        manifests.append(json.loads(manifest_path.read_text()) | {"dir": str(manifest_path.parent)})
    if not manifests:
        raise BundleError(f"{bundle} holds no part-*/{MANIFEST}; build it with `make gpu-bundle`")
    expected = int(str(manifests[0]["parts"]))
    have = sorted(int(str(m["part"])) for m in manifests)
    if have != list(range(1, expected + 1)):
        missing = sorted(set(range(1, expected + 1)) - set(have))
        raise BundleError(
            f"{bundle} lacks part(s) {missing} of {expected}; copy every part-N folder there"
        )
    return sorted(manifests, key=lambda m: int(str(m["part"])))


def stage(bundle: Path, dest: Path) -> Staged:
    """Check every part's files against its manifest, then unpack Triton and gather the wheels."""
    wheels_dir = dest / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    triton_home = dest / "triton"
    python = ""
    for manifest in read_parts(bundle):
        folder = Path(str(manifest["dir"]))
        python = str(manifest["python"])
        files = manifest["files"]
        assert isinstance(files, list)
        for entry in files:
            path = folder / entry["name"]
            if not path.is_file() or _sha256(path) != entry["sha256"]:
                part = manifest["part"]
                raise BundleError(f"{path} is missing or damaged; copy part {part} again")
            if entry["name"] == TRITON_ARCHIVE:
                with tarfile.open(path, "r:xz") as tar:
                    tar.extractall(triton_home, filter="data")
            else:
                shutil.copy2(path, wheels_dir / path.name)
    if not (triton_home / "pytriton").is_dir():
        raise BundleError(f"{bundle} holds no {TRITON_ARCHIVE}")
    return Staged(triton_home, sorted(wheels_dir.glob("*.whl")), python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-bundle")
    parser.add_argument("--python", default="3.12", help="the GPU host's Python (major.minor)")
    parser.add_argument("--triton-home", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from mme_local.runtime.provision import ensure

    home = args.triton_home or ensure().home
    try:
        parts = build(args.out, home, args.python)
    except BundleError as error:
        sys.exit(f"error: {error}")
    for part in parts:
        manifest = json.loads((part / MANIFEST).read_text())
        print(f"{part}: {manifest['bytes'] / MiB:.1f} MiB, {len(manifest['files'])} files")
    print(f"{len(parts)} part(s); copy each part-N folder to the host's {args.out.name}/ in turn")


if __name__ == "__main__":
    main()
