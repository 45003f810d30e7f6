"""Which TargetModels this instance knows, in least-recently-used order, with running totals.

What exists (the models requests have named) is kept apart from what the cache does with
them. The event loop is its only writer.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.layout import model_hash


class ModelRegistry:
    def __init__(self, max_stale_entries: int = 10_000) -> None:
        self.max_stale_entries = max_stale_entries
        """Models that never reached the disk (unknown names, failures) kept at most."""
        self._entries: OrderedDict[str, ModelEntry] = OrderedDict()
        self._stale: deque[str] = deque()
        self.disk_bytes = 0
        """Bytes on disk of every model, kept as a running total."""

    def __iter__(self) -> Iterator[ModelEntry]:
        """Least recently used first."""
        return iter(self._entries.values())

    def get(self, target_model: str) -> ModelEntry | None:
        return self._entries.get(target_model)

    def entry(self, target_model: str) -> ModelEntry:
        """The model's entry, made on first mention."""
        entry = self._entries.get(target_model)
        if entry is None:
            entry = ModelEntry(target_model, model_hash(target_model))
            self._entries[target_model] = entry
        return entry

    def used(self, entry: ModelEntry) -> None:
        """Mark the model most recently used."""
        entry.touch()
        entry.invocations += 1
        self._entries.move_to_end(entry.target_model)

    def set_disk_bytes(self, entry: ModelEntry, size: int) -> None:
        self.disk_bytes += size - entry.disk_bytes
        entry.disk_bytes = size

    def kept_disk_bytes(self) -> int:
        """Bytes on disk that can't be deleted to make room (loaded, busy or pinned)."""
        return sum(e.disk_bytes for e in self._entries.values() if not e.deletable)

    def loaded_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.state is ModelState.LOADED)

    def occupying(self, keep: ModelEntry) -> int:
        """Models loaded or loading besides `keep` (unloading ones are on their way out)."""
        busy = (ModelState.LOADED, ModelState.LOADING)
        return sum(1 for e in self._entries.values() if e is not keep and e.state in busy)

    def others_in_transition(self, entry: ModelEntry) -> bool:
        return any(e is not entry and e.transition is not None for e in self._entries.values())

    def flag_changed(self, etags: Mapping[str, str | None]) -> list[str]:
        """Flag the models on this instance whose S3 object no longer has the ETag they were
        downloaded with; returns the ones flagged just now."""
        flagged = []
        for target, etag in etags.items():
            entry = self._entries.get(target)
            if entry is None or entry.etag is None or entry.state is ModelState.REMOTE:
                continue
            if etag != entry.etag and not entry.artifact_changed:
                entry.artifact_changed = True
                flagged.append(target)
        return flagged

    def forget_later(self, entry: ModelEntry) -> None:
        """Bound the entries of models that never reached the disk, forgetting the oldest."""
        self._stale.append(entry.target_model)
        while len(self._stale) > self.max_stale_entries:
            old = self._entries.get(self._stale.popleft())
            if (
                old is not None
                and old.state is ModelState.REMOTE
                and old.downloads == 0
                and old.pins == 0
                and old.transition is None
            ):
                del self._entries[old.target_model]
