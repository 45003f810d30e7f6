"""`package -t bert-torchserve` writes torch-model-archiver's tgz layout; lint knows it, and
refuses an archive of one stack on an endpoint of the other."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from mme_local.artifacts.lint import Problem, lint_archive
from mme_local.artifacts.package import build_bert_torchserve_folder, package, tiny_bert
from mme_local.cli.package_request import request_for
from tests.unit.test_lint import Entries, make_archive, torch_entries

MANIFEST = {
    "runtime": "python",
    "model": {
        "modelName": "bert",
        "serializedFile": "model.pt",
        "handler": "handler.py",
        "modelVersion": "1.0",
        "configFile": "model-config.yaml",
    },
    "archiverVersion": "0.12.0",
}


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert(seed=3).save_pretrained(folder)
    return folder


def torchserve_entries(root: str = "bert/", **changes: bytes | None) -> Entries:
    entries: Entries = {
        f"{root}MAR-INF/MANIFEST.json": json.dumps(MANIFEST).encode(),
        f"{root}handler.py": b"class H: ...\n",
        f"{root}model.pt": b"weights",
        f"{root}model-config.yaml": b"minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\n",
    }
    for name, content in changes.items():
        key = f"{root}{name.replace('__', '.')}"
        if content is None:
            entries.pop(key)
        else:
            entries[key] = content
    return entries


def _lint(tmp_path: Path, entries: Entries, stack: str | None = None) -> list[Problem]:
    return lint_archive(make_archive(tmp_path / "m.tar.gz", entries), stack=stack)


def test_archiver_layout_is_clean_in_a_folder_or_at_the_root(tmp_path: Path) -> None:
    assert _lint(tmp_path, torchserve_entries()) == []
    assert _lint(tmp_path, torchserve_entries(root="")) == []
    assert _lint(tmp_path, torchserve_entries(), stack="torchserve") == []


def test_each_stack_refuses_the_other_in_one_line(tmp_path: Path) -> None:
    [problem] = _lint(tmp_path, torchserve_entries(), stack="triton")
    assert "TorchServe archive (MAR-INF/MANIFEST.json) on a Triton endpoint" in problem.message
    assert "--stack torchserve" in problem.message and "\n" not in str(problem)
    [problem] = _lint(tmp_path, torch_entries(), stack="torchserve")
    assert "Triton archive (config.pbtxt) on a TorchServe endpoint" in problem.message
    assert "-t bert-torchserve" in problem.message


def test_a_folder_without_manifest_is_not_torchserve(tmp_path: Path) -> None:
    [problem] = _lint(tmp_path, {"bert/model.pt": b"w"}, stack="torchserve")
    assert "no MAR-INF/MANIFEST.json" in problem.message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"handler__py": None}, "handler handler.py is not in the archive"),
        ({"model__pt": None}, "serializedFile model.pt is not in the archive"),
        ({"model-config__yaml": None}, "configFile model-config.yaml is not in the archive"),
        ({"MAR-INF/MANIFEST__json": b"{nope"}, "the manifest is not JSON"),
        ({"model-config__yaml": b"minWorkers: [1\n"}, "model-config.yaml does not parse"),
        ({"model-config__yaml": b"batchSize: two\n"}, "batchSize must be an integer"),
        ({"model-config__yaml": b"minWorkers: 3\nmaxWorkers: 1\n"}, "minWorkers 3 is above"),
    ],
)
def test_layout_errors(tmp_path: Path, changes: dict[str, bytes | None], expected: str) -> None:
    problems = _lint(tmp_path, torchserve_entries(**changes))
    assert [p.severity for p in problems] == ["error"], problems
    assert expected in problems[0].message


def test_requirements_and_unknown_keys_are_warnings(tmp_path: Path) -> None:
    entries = torchserve_entries(
        requirements__txt=b"transformers\n", **{"model-config__yaml": b"minWorker: 1\n"}
    )
    problems = _lint(tmp_path, entries)
    assert {p.severity for p in problems} == {"warning"}
    messages = " ".join(p.message for p in problems)
    assert "needs a network" in messages and "unknown key 'minWorker'" in messages


def test_the_template_writes_the_archiver_layout(tiny_bert_folder: Path, tmp_path: Path) -> None:
    folder = build_bert_torchserve_folder(tmp_path, tiny_bert_folder)
    assert folder == tmp_path / "bert"
    assert json.loads((folder / "MAR-INF" / "MANIFEST.json").read_text()) == MANIFEST
    config = yaml.safe_load((folder / "model-config.yaml").read_text())
    assert config["batchSize"] == 1 and config["minWorkers"] == config["maxWorkers"] == 1
    assert {p.name for p in folder.iterdir()} == {
        "MAR-INF",
        "handler.py",
        "model.pt",
        "model-config.yaml",
    }


def test_packaging_is_deterministic_and_lint_clean(tiny_bert_folder: Path, tmp_path: Path) -> None:
    first = package(tiny_bert_folder, tmp_path / "one", template="bert-torchserve")
    second = package(tiny_bert_folder, tmp_path / "two", template="bert-torchserve")
    assert first.sha256 == second.sha256
    assert lint_archive(first.archives[0], stack="torchserve") == []
    with tarfile.open(first.archives[0]) as archive:
        assert "bert/MAR-INF/MANIFEST.json" in archive.getnames()


def test_the_torchserve_template_takes_the_torchscript_request(tiny_bert_folder: Path) -> None:
    # One request.json answers on either stack: the handler reads the same KServe v2 tensors.
    body = request_for("bert-torchserve", tiny_bert_folder)
    assert body == request_for("bert-torchscript", tiny_bert_folder)
    assert [i["name"] for i in body["inputs"]] == ["INPUT__0", "INPUT__1"]
