"""The cache folder at start-up: an earlier run's model folders are cleared, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from mme_local.cache import layout
from mme_local.cache.layout import CacheFolder, model_hash


async def test_stale_model_folders_are_cleared_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / model_hash("old.tar.gz") / "model"
    stale.mkdir(parents=True)
    (stale / "config.pbtxt").write_text("name: 'old'\n")
    trash = tmp_path / ".trash-0123"
    trash.mkdir()
    instance = tmp_path / "instance-1" / model_hash("old.tar.gz")
    instance.mkdir(parents=True)
    kept = tmp_path / "notes"
    kept.mkdir()
    (tmp_path / "instance-x").mkdir()
    threads: list[int] = []
    clear = layout.clear_stale

    def recording(cache_dir: Path) -> None:
        threads.append(threading.get_ident())
        clear(cache_dir)

    monkeypatch.setattr(layout, "clear_stale", recording)
    loop_thread = threading.get_ident()
    folder = CacheFolder(tmp_path)
    assert await folder.open() == tmp_path.resolve()
    assert threads and loop_thread not in threads
    assert not stale.parent.exists() and not trash.exists()
    assert not instance.parent.exists(), "an earlier run's instance folders go too"
    assert kept.is_dir() and (tmp_path / "instance-x").is_dir()
    await asyncio.to_thread(folder.close)
    assert kept.is_dir(), "a folder the user named is never removed"


async def test_a_temporary_folder_is_made_and_removed(tmp_path: Path) -> None:
    folder = CacheFolder(None)
    path = await folder.open()
    assert path.is_dir()
    folder.close()
    assert not path.exists()
