"""Loads that don't fit: the container's 507, as the cloud answers it, in the cache machine
and in the simulator. Every expected figure here is worked out by hand in the comments."""

from __future__ import annotations

from mme_local.artifacts.rules import MAX_ARCHIVE_BYTES
from mme_local.cache.machine import Answer, CacheMachine, Load, Unload
from mme_local.cache.policy import Budgets


def _loaded(machine: CacheMachine, request: int, name: str, host: int) -> None:
    """`name` downloaded, loaded, measured at `host` bytes and idle."""
    entry = machine.request(request, name)
    machine.downloaded(entry, 1, None)
    machine.loaded(entry)
    machine.measured(entry, host)
    machine.done(entry)
    machine.outbox.clear()


def test_a_507_whose_victim_the_next_queued_load_also_wants_unloads_it_once() -> None:
    # One load slot, 200 bytes of host memory. a (100) is loaded and idle; c (150, measured
    # before) is on disk. b's load is running when c is requested: c queues for the slot.
    machine = CacheMachine(Budgets(None, 200, None, MAX_ARCHIVE_BYTES), max_parallel_loads=1)
    _loaded(machine, 1, "c", 150)
    machine.container_lost(machine.models["c"])  # c: on disk, its size known
    _loaded(machine, 2, "a", 100)
    b = machine.request(3, "b")
    machine.downloaded(b, 1, None)
    c = machine.request(4, "c")
    machine.outbox.clear()
    # b answers 507: a is the one idle model; the freed slot goes to c, which needs a's room
    # too (100 + 150 > 200). a must be unloaded once, not twice.
    machine.load_rejected_for_memory(b, MemoryError("CUDA out of memory"))
    unloads = [cmd.entry.target_model for cmd in machine.outbox if isinstance(cmd, Unload)]
    assert unloads == ["a"]
    machine.outbox.clear()
    machine.unloaded(machine.models["a"])
    loads = sorted(cmd.entry.target_model for cmd in machine.outbox if isinstance(cmd, Load))
    assert loads == ["c"]  # b waits for the slot c holds, and loads after it
    assert not [cmd for cmd in machine.outbox if isinstance(cmd, Answer) and cmd.error]
    assert c.state.value == "loading"
