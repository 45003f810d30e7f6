"""Find a Triton server to run, or provision one from the `nvidia-pytriton` wheel.

The wheel is treated as a runtime to install (like pulling an image), never as an import:
its requirements would stop users from installing a current `sagemaker` beside mme-local.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mme_local.files import file_sha256
from mme_local.paths import user_cache_dir

PYTRITON_VERSION = "0.7.0"
PYTRITON_WHEEL = f"nvidia_pytriton-{PYTRITON_VERSION}-py3-none-manylinux_2_35_x86_64.whl"
PYTRITON_SHA256 = "21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df"
# The Triton release bundled in that wheel.
PYTRITON_TRITON_VERSION = "2.51.0"

# From this release Triton's SageMaker front end loads only /opt/ml/models/<hash>/model, a
# path the embedded runtime cannot offer without writing to /opt (the docker runtime mounts
# the cache there).
STRICT_LOAD_PATHS_FROM = (2, 70)

TRITON_HOME_ENV = "MME_LOCAL_TRITON_HOME"
_MARKER = "mme-local-runtime.json"
_WHEEL_PREFIXES = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")


class RuntimeNotFound(RuntimeError):
    """No usable Triton installation was found where one was asked for."""


class UnsupportedTriton(RuntimeNotFound):
    """A Triton the embedded runtime cannot drive (it would refuse every load)."""


class ProvisionError(RuntimeError):
    """Installing the Triton runtime failed; nothing half-made was left behind."""


@dataclass(frozen=True)
class TritonInstall:
    """Where one Triton installation keeps its binary, libraries and Python backend."""

    home: Path
    binary: Path
    library_dirs: tuple[Path, ...]
    python_backend_dir: Path
    # pytriton's layout keeps one stub per Python version apart from the backend.
    stubs_dir: Path | None
    source: str
    version: str | None

    def stub_for(self, python_version: tuple[int, int]) -> Path | None:
        """The Python backend stub that embeds the given Python, if this install has one."""
        major, minor = python_version
        if self.stubs_dir is not None:
            candidate = self.stubs_dir / f"{major}.{minor}" / "triton_python_backend_stub"
            return candidate if candidate.is_file() else None
        candidate = self.python_backend_dir / "triton_python_backend_stub"
        return candidate if candidate.is_file() else None

    def available_stubs(self) -> list[str]:
        if self.stubs_dir is None or not self.stubs_dir.is_dir():
            return []
        return sorted(p.name for p in self.stubs_dir.iterdir() if p.is_dir())


def runtime_cache_dir() -> Path:
    return user_cache_dir() / "runtime"


def _version_tuple(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


def check_load_paths(version: str | None, binary: Path | str) -> None:
    """Refuse a Triton that would answer 400 to every load the embedded runtime sends."""
    parsed = _version_tuple(version) if version else None
    if parsed is None or parsed < STRICT_LOAD_PATHS_FROM:
        return
    limit = ".".join(str(n) for n in STRICT_LOAD_PATHS_FROM)
    raise UnsupportedTriton(
        f"tritonserver {version} ({binary}) loads models only from /opt/ml/models/<hash>/model "
        f"from {limit} on, which the embedded runtime cannot provide; use a Triton before "
        f"{limit} (unset ${TRITON_HOME_ENV} or take it off PATH to use the provisioned "
        f"{PYTRITON_TRITON_VERSION}) or run `mme-local up --runtime docker`"
    )


def _read_triton_version_file(home: Path) -> str | None:
    """NVIDIA's containers record the release in <home>/TRITON_VERSION."""
    try:
        text = (home / "TRITON_VERSION").read_text().strip()
    except OSError:
        return None
    return text or None


def _read_marker(home: Path) -> dict[str, str]:
    marker = home / _MARKER
    if not marker.is_file():
        return {}
    data = json.loads(marker.read_text())
    return {str(k): str(v) for k, v in data.items()}


def inspect(home: Path, source: str) -> TritonInstall:
    """Describe the Triton installation rooted at `home` (pytriton or NVIDIA container layout)."""
    home = home.resolve()
    version = _read_marker(home).get("triton_version") or _read_triton_version_file(home)
    pytriton_root = home / "pytriton" / "tritonserver"
    if (pytriton_root / "bin" / "tritonserver").is_file():
        return TritonInstall(
            home=home,
            binary=pytriton_root / "bin" / "tritonserver",
            library_dirs=(home / "nvidia_pytriton.libs",),
            python_backend_dir=pytriton_root / "backends" / "python",
            stubs_dir=pytriton_root / "python_backend_stubs",
            source=source,
            version=version,
        )
    if (home / "bin" / "tritonserver").is_file():
        return TritonInstall(
            home=home,
            binary=home / "bin" / "tritonserver",
            library_dirs=(home / "lib",),
            python_backend_dir=home / "backends" / "python",
            stubs_dir=None,
            source=source,
            version=version,
        )
    raise RuntimeNotFound(
        f"{home} holds no tritonserver (looked for bin/tritonserver and "
        "pytriton/tritonserver/bin/tritonserver)"
    )


def installed_copy() -> Path:
    """Where `runtime install` puts the pinned Triton."""
    return runtime_cache_dir() / f"pytriton-{PYTRITON_VERSION}"


def locate(explicit: Path | None = None) -> TritonInstall | None:
    """Find Triton: explicit path, then $MME_LOCAL_TRITON_HOME, PATH, the provisioned copy."""
    if explicit is not None:
        return inspect(explicit, "explicit path")
    env_home = os.environ.get(TRITON_HOME_ENV)
    if env_home:
        return inspect(Path(env_home), f"${TRITON_HOME_ENV}")
    on_path = shutil.which("tritonserver")
    if on_path:
        # NVIDIA's containers put the binary in <home>/bin.
        return inspect(Path(on_path).resolve().parent.parent, "PATH")
    copy = installed_copy()
    if (copy / _MARKER).is_file():
        return inspect(copy, "provisioned")
    return None


def ensure(
    explicit: Path | None = None, progress: Callable[[str], None] | None = None
) -> TritonInstall:
    """Return a usable Triton, provisioning the pinned one on first use."""
    found = locate(explicit)
    if found is not None:
        check_load_paths(found.version, found.binary)
        return found
    return install(progress=progress)


def _download_wheel(dest: Path, progress: Callable[[str], None]) -> Path:
    progress(f"downloading nvidia-pytriton=={PYTRITON_VERSION} (about 55 MB) with pip")
    command = [
        sys.executable, "-m", "pip", "download", f"nvidia-pytriton=={PYTRITON_VERSION}",
        "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_35_x86_64",
        "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, check=False)
    wheel = dest / PYTRITON_WHEEL
    if result.returncode != 0 or not wheel.is_file():
        raise ProvisionError(
            f"pip could not download nvidia-pytriton=={PYTRITON_VERSION} "
            f"(exit {result.returncode}); download {PYTRITON_WHEEL} by hand and run "
            "`mme-local runtime install --wheel PATH`"
        )
    return wheel


def install(
    wheel: Path | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> TritonInstall:
    """Unpack the pinned nvidia-pytriton wheel's server tree into the user cache, atomically.

    Everything is built in a temporary folder beside the target and renamed into place at
    the end, so an interrupted install leaves nothing half-made.
    """
    say = progress or (lambda message: None)
    target = installed_copy()
    if (target / _MARKER).is_file() and not force:
        return inspect(target, "provisioned")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".install-") as scratch_name:
        scratch = Path(scratch_name)
        if wheel is None:
            wheel = _download_wheel(scratch / "download", say)
        say(f"verifying {wheel.name}")
        digest = file_sha256(wheel)
        if digest != PYTRITON_SHA256:
            raise ProvisionError(
                f"{wheel} has sha256 {digest}, expected {PYTRITON_SHA256}; refusing to install it"
            )
        staging = scratch / "tree"
        say(f"unpacking Triton {PYTRITON_TRITON_VERSION} into {target}")
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.startswith(_WHEEL_PREFIXES)]
            archive.extractall(staging, members)
        for executable in [
            staging / "pytriton/tritonserver/bin/tritonserver",
            *staging.glob(
                "pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub"
            ),
        ]:
            executable.chmod(0o755)
        marker = {
            "triton_version": PYTRITON_TRITON_VERSION,
            "source": f"nvidia-pytriton=={PYTRITON_VERSION}",
            "sha256": PYTRITON_SHA256,
        }
        (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    say(f"Triton {PYTRITON_TRITON_VERSION} is ready in {target}")
    return inspect(target, "provisioned")
