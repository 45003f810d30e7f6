from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mme_local.artifacts.lint import Problem, find_archives, lint_archive
from mme_local.cli.lint_cmd import lint

TORCH_CONFIG = """
name: "bert"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1, 768 ] } ]
"""
PYTHON_CONFIG = 'name: "echo"\nbackend: "python"\nmax_batch_size: 0\n'
ENSEMBLE_CONFIG = """
name: "pipeline"
platform: "ensemble"
ensemble_scheduling {
  step [
    { model_name: "pre" model_version: -1
      input_map { key: "IN" value: "RAW" } output_map { key: "OUT" value: "TOKENS" } },
    { model_name: "bert" model_version: -1
      input_map { key: "INPUT__0" value: "TOKENS" } output_map { key: "OUTPUT__0" value: "EMB" } }
  ]
}
"""
PRE_CONFIG = 'name: "pre"\nbackend: "python"\n'

Entries = dict[str, bytes | None]
"""Member path -> file content, or None for a folder."""


def make_archive(path: Path, entries: Entries) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def torch_entries(folder: str = "bert") -> Entries:
    return {
        f"{folder}/config.pbtxt": TORCH_CONFIG.encode(),
        f"{folder}/1/model.pt": b"torchscript bytes",
    }


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def only_error(problems: list[Problem]) -> Problem:
    found = errors(problems)
    assert len(found) == 1, found
    return found[0]


def test_torchscript_archive_is_clean(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "bert.tar.gz", torch_entries())
    assert lint_archive(archive) == []


def test_config_at_root_with_version_folder_is_clean(tmp_path: Path) -> None:
    entries = {"./config.pbtxt": TORCH_CONFIG.encode(), "./1/model.pt": b"x"}
    assert lint_archive(make_archive(tmp_path / "root.tar.gz", entries)) == []


def test_python_backend_archive_is_clean(tmp_path: Path) -> None:
    entries: Entries = {"echo/config.pbtxt": PYTHON_CONFIG.encode(), "echo/1/model.py": b"x"}
    assert lint_archive(make_archive(tmp_path / "echo.tar.gz", entries)) == []


def test_ensemble_archive_is_clean(tmp_path: Path) -> None:
    entries: Entries = {
        "pipeline/config.pbtxt": ENSEMBLE_CONFIG.encode(),
        "pipeline/1": None,
        "pre/config.pbtxt": PRE_CONFIG.encode(),
        "pre/1/model.py": b"x",
        **torch_entries(),
    }
    assert lint_archive(make_archive(tmp_path / "ens.tar.gz", entries)) == []


def test_default_model_filename_is_honoured(tmp_path: Path) -> None:
    config = TORCH_CONFIG + 'default_model_filename: "traced.pt"\n'
    entries: Entries = {"bert/config.pbtxt": config.encode(), "bert/1/traced.pt": b"x"}
    assert lint_archive(make_archive(tmp_path / "a.tar.gz", entries)) == []


def test_no_config(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tar.gz", {"bert/1/model.pt": b"x"})
    problem = only_error(lint_archive(archive))
    assert problem.message.startswith("no config.pbtxt")
    assert "bert/config.pbtxt" in problem.message


def test_no_version_folder(tmp_path: Path) -> None:
    entries: Entries = {"bert/config.pbtxt": TORCH_CONFIG.encode(), "bert/model.pt": b"x"}
    problems = lint_archive(make_archive(tmp_path / "a.tar.gz", entries))
    problem = only_error(problems)
    assert problem.message.startswith("no numeric version folder")
    assert "'bert/1/'" in problem.message
    assert [p.member for p in problems if p.severity == "warning"] == ["bert/model.pt"]


def test_missing_model_file_for_platform(tmp_path: Path) -> None:
    entries: Entries = {"bert/config.pbtxt": TORCH_CONFIG.encode(), "bert/1/model.onnx": b"x"}
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert problem.member == "bert/1/"
    assert problem.message.startswith("no model.pt for pytorch_libtorch")
    assert "default_model_filename" in problem.message


@pytest.mark.parametrize(
    ("platform", "filename"),
    [("onnxruntime_onnx", "model.onnx"), ("tensorrt_plan", "model.plan")],
)
def test_each_platform_needs_its_file(tmp_path: Path, platform: str, filename: str) -> None:
    config = f'platform: "{platform}"\n'.encode()
    bad = make_archive(tmp_path / "bad.tar.gz", {"m/config.pbtxt": config, "m/1/x.bin": b"x"})
    assert only_error(lint_archive(bad)).message.startswith(f"no {filename} for {platform}")
    good = {"m/config.pbtxt": config, f"m/1/{filename}": b"x"}
    assert lint_archive(make_archive(tmp_path / "good.tar.gz", good)) == []


def test_savedmodel_is_a_folder(tmp_path: Path) -> None:
    entries: Entries = {
        "tf/config.pbtxt": b'platform: "tensorflow_savedmodel"\n',
        "tf/1/model.savedmodel/saved_model.pb": b"x",
    }
    assert lint_archive(make_archive(tmp_path / "a.tar.gz", entries)) == []


def test_two_models_without_ensemble(tmp_path: Path) -> None:
    entries = {**torch_entries("bert"), **torch_entries("bert2")}
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert problem.message.startswith("2 top-level models (bert, bert2) and no ensemble")
    assert "package each model separately" in problem.message


def test_member_path_escaping_the_folder(tmp_path: Path) -> None:
    entries = {**torch_entries(), "../x": b"evil"}
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert problem.member == "../x"
    assert problem.message.startswith("member path escapes the model folder")


def test_absolute_path_and_links_out(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, content in torch_entries().items():
            info = tarfile.TarInfo(name)
            info.size = len(content or b"")
            tar.addfile(info, io.BytesIO(content or b""))
        tar.addfile(tarfile.TarInfo("/etc/evil"), io.BytesIO(b""))
        link = tarfile.TarInfo("bert/1/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(link)
        inside = tarfile.TarInfo("bert/1/alias.pt")
        inside.type, inside.linkname = tarfile.SYMTYPE, "model.pt"
        tar.addfile(inside)
        device = tarfile.TarInfo("bert/1/dev")
        device.type = tarfile.CHRTYPE
        tar.addfile(device)
    messages = {p.member: p.message for p in errors(lint_archive(path))}
    assert messages["/etc/evil"].startswith("absolute member path")
    assert messages["bert/1/passwd"].startswith("symbolic link points outside the archive")
    assert messages["bert/1/dev"].startswith("device or FIFO member")
    assert "bert/1/alias.pt" not in messages


def test_not_a_gzip_archive(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar.gz"
    with tarfile.open(plain, "w") as tar:
        tar.addfile(tarfile.TarInfo("bert/config.pbtxt"), io.BytesIO(b""))
    problem = only_error(lint_archive(plain))
    assert problem.member is None
    assert problem.message.startswith("not a gzip archive")


def test_truncated_archive(tmp_path: Path) -> None:
    path = make_archive(tmp_path / "a.tar.gz", {**torch_entries(), "bert/1/big": b"x" * 100_000})
    path.write_bytes(path.read_bytes()[:60])
    assert only_error(lint_archive(path)).message.startswith("not a readable tar.gz")


def test_unparsable_config(tmp_path: Path) -> None:
    entries: Entries = {"bert/config.pbtxt": b'platform: "x"\nbogus_field: 1\n', "bert/1/m": b""}
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert problem.member == "bert/config.pbtxt"
    assert problem.message.startswith("config.pbtxt does not parse")
    assert "bogus_field" in problem.message


def test_expanded_size_is_capped(tmp_path: Path) -> None:
    path = make_archive(tmp_path / "a.tar.gz", {**torch_entries(), "bert/1/w": b"0" * 4096})
    problem = only_error(lint_archive(path, max_expanded_bytes=1024))
    assert problem.message.startswith("expands to more than 1024 bytes")


def test_stray_files_are_warnings(tmp_path: Path) -> None:
    entries = {**torch_entries(), "README.md": b"x", "bert/notes.txt": b"x", "bert/old/": None}
    problems = lint_archive(make_archive(tmp_path / "a.tar.gz", entries))
    assert errors(problems) == []
    assert sorted(str(p.member) for p in problems) == ["README.md", "bert/notes.txt", "bert/old/"]


def test_ensemble_needs_its_members(tmp_path: Path) -> None:
    entries = {"pipeline/config.pbtxt": ENSEMBLE_CONFIG.encode(), "pipeline/1": None}
    entries.update(torch_entries())
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert "ensemble step uses model 'pre'" in problem.message


def test_specific_version_policy_missing_folder(tmp_path: Path) -> None:
    config = TORCH_CONFIG + "version_policy: { specific: { versions: [2] } }\n"
    entries: Entries = {"bert/config.pbtxt": config.encode(), "bert/1/model.pt": b"x"}
    problem = only_error(lint_archive(make_archive(tmp_path / "a.tar.gz", entries)))
    assert problem.message.startswith("version_policy asks for version 2")


def test_problem_is_one_line(tmp_path: Path) -> None:
    problem = Problem("a.tar.gz", "bert/1/", "no model.pt", "error")
    assert str(problem) == "a.tar.gz:bert/1/: error: no model.pt"


def test_find_archives(tmp_path: Path) -> None:
    (tmp_path / "b.tar.gz").write_bytes(b"")
    (tmp_path / "a.tar.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    single = tmp_path / "x.tgz"
    assert find_archives([tmp_path, single]) == [
        tmp_path / "a.tar.gz",
        tmp_path / "b.tar.gz",
        single,
    ]


def test_cli_reports_and_exits_1_on_errors(tmp_path: Path) -> None:
    import typer

    app = typer.Typer()
    app.command()(lint)
    make_archive(tmp_path / "good.tar.gz", torch_entries())
    make_archive(tmp_path / "bad.tar.gz", {"bert/1/model.pt": b"x"})
    result = CliRunner().invoke(app, [str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{tmp_path / 'bad.tar.gz'}: error: no config.pbtxt")
    assert lines[-1].startswith("2 archive(s) checked: 1 error(s), 0 warning(s)")

    result = CliRunner().invoke(app, [str(tmp_path / "good.tar.gz")])
    assert result.exit_code == 0
    assert result.output.strip() == "1 archive(s) checked: 0 error(s), 0 warning(s)"


def test_odd_names_print_on_one_line(tmp_path: Path) -> None:
    entries = torch_entries() | {"bert/a\nb": b"x", "bert/\udcff.bin": b"x"}
    problems = lint_archive(make_archive(tmp_path / "a.tar.gz", entries))
    assert errors(problems) == []
    assert sorted(str(p.member) for p in problems) == ["bert/\\udcff.bin", "bert/a\\nb"]
    for problem in problems:
        str(problem).encode("utf-8")
        assert "\n" not in str(problem)
