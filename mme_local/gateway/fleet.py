"""The instances behind one endpoint, and which one gets a request (`up --instance-count N`).

Each instance has its own model server, cache and budgets; the gateway asks `Fleet.pick` for
one per request, which applies the rule the capacity simulator applies (`mme_local.routing`)
to what each instance's cache machine knows right now. `pick` and the lease that follows it
run in one step of the event loop, so two requests can't both see a model as not held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mme_local.cache.entry import ModelState
from mme_local.cache.manager import ModelCache
from mme_local.routing import route
from mme_local.runtime.client import ContainerClient

# States in which an instance holds a model (or is getting it): requests for it go there.
_HOLDING = frozenset({ModelState.LOADED, ModelState.LOADING, ModelState.DOWNLOADING})


def _memory_staying(cache: ModelCache, members: list[Member]) -> int:
    """The cache machine's memory of the models that stay, with a loaded model whose memory
    is not known yet counted as that model measures elsewhere (else as the mean loaded model).

    Live, a model's memory is measured just after its load (and, for a model without a
    process of its own, not at all while other work runs on the same server); it counts as 0
    until then, where the simulator counts its profiled footprint from the load's end. Without
    the stand-in an instance would look emptier than it is for that moment, and routing would
    differ by timing.
    """
    machine = cache.machine
    held = machine.memory_staying
    unknown = [
        e for e in machine.models.values() if e.state is ModelState.LOADED and e.memory_bytes == 0
    ]
    if not unknown:
        return held
    measured: dict[str, list[int]] = {}
    for member in members:
        for e in member.cache.machine.models.values():
            if e.memory_bytes > 0 and e.state in _HOLDING:
                measured.setdefault(e.target_model, []).append(e.memory_bytes + e.gpu_bytes)
    every = [size for sizes in measured.values() for size in sizes]
    mean = sum(every) // len(every) if every else 0
    for e in unknown:
        same = measured.get(e.target_model)
        held += min(same) if same else mean
    return held


@dataclass(frozen=True)
class Member:
    """One instance: its index (as the views and metrics name it), cache and container."""

    index: int
    cache: ModelCache
    client: ContainerClient
    running: Callable[[], bool] = lambda: True
    """Whether its model server answers; a restarting instance gets no new requests while
    another one runs (as a load balancer leaves out an instance failing its health check)."""


class Fleet:
    def __init__(self, members: Sequence[Member]) -> None:
        if not members:
            raise ValueError("an endpoint has at least one instance")
        self.members = list(members)

    def __len__(self) -> int:
        return len(self.members)

    def pick(self, target_model: str) -> Member:
        members = self.members
        if len(members) == 1:
            return members[0]
        running = [m.index for m in members if m.running()]
        candidates = running or [m.index for m in members]

        def entry_state(i: int) -> tuple[ModelState | None, int]:
            entry = members[i].cache.machine.models.get(target_model)
            return (None, 0) if entry is None else (entry.state, entry.pins)

        def memory_held(i: int) -> int:
            return _memory_staying(members[i].cache, members)

        chosen = route(
            candidates,
            holds=lambda i: entry_state(i)[0] in _HOLDING,
            # A request is being answered by the loaded model: the simulator's "busy"
            # without queueing (a load in flight is not busy: wait on it).
            busy=lambda i: entry_state(i)[0] is ModelState.LOADED and entry_state(i)[1] > 0,
            memory_held=memory_held,
            # Which busy instance frees first is unknown live: fewest requests in flight.
            free_order=lambda i: float(entry_state(i)[1]),
        )
        return members[chosen]
