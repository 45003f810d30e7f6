"""The disk pass's order of deletable models (`_Settled`) against a plain sorted list.

`_Settled` keeps deletable models in a heap that goes stale lazily and is compacted now and
then; whatever it does inside, a pass must meet exactly the idle models on disk, least
recently used first.
"""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import _Settled
from mme_local.cache.policy import Budgets, EvictionPolicy

NAMES = [f"m{i}" for i in range(4)]


class Reference:
    """What the pass should find: settled, on disk and idle, by last use."""

    def __init__(self) -> None:
        self.settled = _Settled()
        self.entries = {name: ModelEntry(name, name) for name in NAMES}
        self.order: list[str] = []
        """Settled models, least recently used first."""

    def expected(self) -> list[ModelEntry]:
        return [self.entries[n] for n in self.order if self.entries[n].deletable]

    def found(self) -> list[ModelEntry]:
        taken: list[ModelEntry] = []
        found = list(self.settled.deletable(taken))
        self.settled.give_back(taken)
        return found

    def step(self, op: str, name: str) -> None:
        entry, settled = self.entries[name], self.settled
        if op == "download":  # downloaded: settled and on disk (the machine loads it next)
            if name in settled:
                return
            entry.state, entry.pins = ModelState.ON_DISK, 0
            settled[name] = entry
            self.order.append(name)
        elif name not in settled:
            return
        elif op == "use" and entry.state is ModelState.LOADING:
            # The cache counts a use only of a model it has loaded (here: LOADING).
            settled.touch(name)
            self.order.remove(name)
            self.order.append(name)
        elif op == "load":
            entry.state = ModelState.LOADING
        elif op == "unload" and entry.state is ModelState.LOADING:
            entry.state = ModelState.ON_DISK
            settled.offer(entry)
        elif op == "pin":
            entry.pins += 1
        elif op == "unpin" and entry.pins:
            entry.pins -= 1
            settled.offer(entry)
        elif op == "delete" and entry.deletable:
            settled.pop(name)
            entry.state = ModelState.REMOTE
            self.order.remove(name)
        elif op == "cycle":  # loaded, used, unloaded: leaves a stale number behind
            for each in ("load", "use", "unload"):
                self.step(each, name)
        elif op == "pass":  # a pass that stops after the first model it meets
            taken: list[ModelEntry] = []
            next(settled.deletable(taken), None)
            settled.give_back(taken)


OPS = ["download", "use", "load", "unload", "pin", "unpin", "delete", "pass", "check"]
OPS += ["cycle"] * len(OPS)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(NAMES)), max_size=200))
def test_a_pass_meets_the_idle_models_on_disk_least_recently_used_first(
    steps: list[tuple[str, str]],
) -> None:
    model = Reference()
    # No slack: the heap is compacted as soon as stale numbers are half of it.
    with patch("mme_local.cache.machine._COMPACT_SLACK", 0):
        for name in NAMES:
            model.step("download", name)
        for op, name in steps:
            if op == "check":  # a whole pass pops every stale number: only now and then
                assert model.found() == model.expected()
            else:
                model.step(op, name)
        assert model.found() == model.expected()


def test_the_heap_stays_small_when_a_model_is_used_and_unloaded_over_and_over() -> None:
    """Each use leaves a stale number behind; compaction drops them, order unchanged."""
    model = Reference()
    for name in NAMES:
        model.step("download", name)
    for _ in range(1000):
        for op in ("load", "use", "unload"):
            model.step(op, "m0")
    assert len(model.settled._heap) <= 2 * len(NAMES) + 65
    assert model.found() == model.expected()
    assert model.found()[-1].target_model == "m0"


def test_the_disk_pass_draws_no_model_beyond_the_ones_it_deletes() -> None:
    """The pass's source is a lazy walk of a heap: drawing one more pops it for nothing."""
    policy = EvictionPolicy(Budgets(None, None, 100, 1 << 20))
    entries = [ModelEntry(f"m{i}", f"m{i}") for i in range(5)]
    for entry in entries:
        entry.state, entry.disk_bytes = ModelState.ON_DISK, 30
    drawn = 0

    def walk() -> Iterator[ModelEntry]:
        nonlocal drawn
        for entry in entries:
            drawn += 1
            yield entry

    assert list(policy.disk_victims(walk(), used_bytes=150)) == entries[:2]
    assert drawn == 2
    assert list(policy.disk_victims(walk(), used_bytes=100)) == []
    assert drawn == 2
