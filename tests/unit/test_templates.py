"""Where `package` finds its templates: the installed copy, or $MME_LOCAL_TEMPLATES."""

from __future__ import annotations

from pathlib import Path

import pytest

import mme_local
from mme_local.artifacts.templates import (
    TEMPLATES,
    TEMPLATES_ENV,
    TemplateError,
    template_dir,
    templates_root,
)

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "model_repo_templates"


def test_templates_come_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEMPLATES_ENV, raising=False)
    root = templates_root()
    assert root.parent == Path(mme_local.__file__).resolve().parent
    for name, template in TEMPLATES.items():
        assert (template_dir(name) / template.marker).is_file()
        assert (template_dir(name) / "README.md").is_file()


def test_the_package_copy_is_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEMPLATES_ENV, raising=False)
    assert templates_root().resolve() == REPO_TEMPLATES


def test_environment_overrides_the_installed_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bert-text").mkdir()
    (tmp_path / "bert-text" / "config.pbtxt").write_text('name: "x"\n')
    monkeypatch.setenv(TEMPLATES_ENV, str(tmp_path))
    assert template_dir("bert-text") == tmp_path / "bert-text"
    with pytest.raises(TemplateError, match=rf"has no config.pbtxt: .*\${TEMPLATES_ENV}"):
        template_dir("bert-torchscript")
