"""Large archives: member data that `lint` skips is data, not header bytes (issue #24)."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from mme_local.artifacts import rules
from mme_local.artifacts.lint import lint_archive

CONFIG = b'name: "bert"\nplatform: "pytorch_libtorch"\nmax_batch_size: 0\n'


def _zero_model_archive(path: Path, weights_bytes: int) -> Path:
    """A bert-shaped model.tar.gz whose model.pt is `weights_bytes` zeros.

    Written straight as gzip'd tar blocks, so a file of hundreds of MiB costs a few hundred KB
    of disk and well under a second of compression.
    """
    packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    with path.open("wb") as out:

        def put(data: bytes) -> None:
            out.write(packer.compress(data))

        for name, data in [("bert/config.pbtxt", CONFIG)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            put(info.tobuf(format=tarfile.GNU_FORMAT))
            put(data + bytes(-len(data) % tarfile.BLOCKSIZE))
        info = tarfile.TarInfo("bert/1/model.pt")
        info.size = weights_bytes
        put(info.tobuf(format=tarfile.GNU_FORMAT))
        left = weights_bytes + (-weights_bytes % tarfile.BLOCKSIZE)
        while left:
            step = min(left, len(zeros))
            put(zeros[:step])
            left -= step
        put(bytes(2 * tarfile.BLOCKSIZE))
        out.write(packer.flush())
    return path


def test_an_archive_with_more_file_data_than_the_header_cap_lints_clean(tmp_path: Path) -> None:
    weights = rules.MAX_TOTAL_HEADER_BYTES + (4 << 20)
    archive = _zero_model_archive(tmp_path / "bert.tar.gz", weights)
    assert archive.stat().st_size < 1 << 20, "zeros compress: the test stays small on disk"
    problems = lint_archive(archive)
    assert [p for p in problems if p.severity == "error"] == []
