"""The expected counts: a count-limited LRU cache replaying the demo's requests."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LruOutcome:
    hits: int = 0
    loads: int = 0
    unloads: int = 0
    distinct: int = 0
    """Models named at least once: each is downloaded once (an unloaded model stays on disk)."""
    loaded_at_end: int = 0


def simulate_lru(sequence: Sequence[int], capacity: int) -> LruOutcome:
    """What a count-limited LRU cache does with this sequence, request by request."""
    loaded: OrderedDict[int, None] = OrderedDict()
    hits = loads = unloads = 0
    for model in sequence:
        if model in loaded:
            hits += 1
            loaded.move_to_end(model)
            continue
        if len(loaded) >= capacity:
            loaded.popitem(last=False)
            unloads += 1
        loaded[model] = None
        loads += 1
    return LruOutcome(hits, loads, unloads, len(set(sequence)), len(loaded))
