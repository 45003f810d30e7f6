"""Which instance of a multi-model endpoint answers a request: one rule, written once.

The live gateway (`up --instance-count N`) and the capacity simulator both call `route`, each
with the facts it has about its instances: whether an instance holds the model (loaded, or
being downloaded or loaded), whether it is busy with it, how much memory it holds, and how
soon it is free.

SageMaker does not publish its routing. AWS's "How multi-model endpoints work" says only that
requests for a model keep going to an instance where it is loaded, and that when a model gets
many requests some go to another instance, which loads it too. The rule chosen here:

1. an instance that holds the model and is not busy with it (the lowest index first);
2. else, if some instance doesn't hold it, the one of those with the least memory held by the
   models that stay on it (loaded or loading; a model being unloaded no longer counts, so how
   long an unload takes does not sway the choice), which then loads it. Memory within
   `MEMORY_TIE` of the least counts as a tie, won by the lowest index: measured footprints of
   identical models differ by a little, and that noise should not decide where a model goes
   (it would also make a replay's placement a coin toss);
3. else (every instance holds it, all busy) the holding instance that is free soonest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MEMORY_TIE = 0.05
"""Memory held within this share of the least is as little (ties: the lowest index)."""


def route(
    candidates: Sequence[int],
    holds: Callable[[int], bool],
    busy: Callable[[int], bool],
    memory_held: Callable[[int], int],
    free_order: Callable[[int], float],
) -> int:
    """The instance, among `candidates` (instance indexes, in order), that gets the request.

    `busy(i)` is asked only of an instance that holds the model; `free_order(i)` (lower is
    free sooner) only when every candidate holds it and all are busy.
    """
    if not candidates:
        raise ValueError("no instance to route to")
    holding = [i for i in candidates if holds(i)]
    for i in holding:
        if not busy(i):
            return i
    others = [i for i in candidates if i not in holding]
    if others:
        held = {i: memory_held(i) for i in others}
        least = min(held.values())
        return next(i for i in others if held[i] <= least + least * MEMORY_TIE)
    return min(holding, key=free_order)
