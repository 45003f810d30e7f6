"""The cache's state machine alone, on hand-written interleavings the model-based test found."""

from __future__ import annotations

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import CacheMachine, Download, Load, Unload
from mme_local.cache.policy import Budgets
from mme_local.runtime.errors import InsufficientMemory


def _commands(machine: CacheMachine) -> list[object]:
    commands, machine.outbox[:] = list(machine.outbox), []
    return commands


def _load(machine: CacheMachine, request: int, target: str, memory: int) -> ModelEntry:
    """Request `target`, download it, load it, measure it, end the request."""
    entry = machine.request(request, target)
    (download,) = [c for c in _commands(machine) if isinstance(c, Download)]
    machine.downloaded(download.entry, 10, None)
    assert any(isinstance(c, Load) for c in _commands(machine))
    machine.loaded(entry)
    machine.measured(entry, memory)
    machine.done(entry)
    return entry


def test_a_507_on_load_unloads_its_victim_once_when_the_next_load_wants_it_too() -> None:
    machine = CacheMachine(Budgets(None, 100, None, 1000), max_parallel_loads=1)
    first = _load(machine, 0, "c", 60)
    second = _load(machine, 1, "a", 50)  # over the budget: c (idle) is unloaded
    (unload,) = [c for c in _commands(machine) if isinstance(c, Unload)]
    assert unload.entry is first
    machine.unloaded(first)
    _commands(machine)

    third = machine.request(2, "b")
    (download,) = [c for c in _commands(machine) if isinstance(c, Download)]
    machine.downloaded(download.entry, 10, None)
    assert [c.entry for c in _commands(machine) if isinstance(c, Load)] == [third]
    machine.request(3, "c")  # queued for the one load slot
    # b is refused for memory: a goes; c takes the slot and would want a gone too.
    machine.load_rejected_for_memory(third, InsufficientMemory("out of memory"))
    unloads = [c.entry for c in _commands(machine) if isinstance(c, Unload)]
    assert unloads == [second]
    assert second.state is ModelState.UNLOADING
    assert machine.occupying == 2  # b and c loading; a on its way out


def test_the_machines_own_memory_check_gives_the_policys_answer() -> None:
    # `CacheMachine._memory_short` spells out `EvictionPolicy.memory_short` (it runs several
    # times per request in the capacity simulator): both must say the same on every figure.
    for budgets in (
        Budgets(None, 100, None, 1000),
        Budgets(None, None, None, 1000, gpu_memory_bytes=50),
        Budgets(None, 100, None, 1000, gpu_memory_bytes=50),
        Budgets(None, None, None, 1000),
    ):
        for track_gpu in (False, True):
            machine = CacheMachine(budgets, track_gpu=track_gpu)
            for held, leaving, adding, gpu_held, gpu_adding in [
                (60, 0, 40, 10, 0),
                (60, 0, 41, 10, 0),
                (90, 20, 20, 40, 11),
                (90, 20, 31, 45, 6),
                (101, 0, 0, 51, 0),
            ]:
                machine.host_held, machine.host_leaving = held, leaving
                machine.gpu_held, machine.gpu_leaving = gpu_held, 5
                for going in (False, True):
                    host = held - (leaving if going else 0)
                    gpu = None
                    if track_gpu:
                        gpu = gpu_held + gpu_adding - (5 if going else 0)
                    expected = machine.policy.memory_short(host, gpu, adding)
                    assert machine._memory_short(adding, gpu_adding, going) == expected


def test_a_grown_base_is_enforced_at_the_next_requests_end() -> None:
    # A request's end enforces the memory budgets only when memory may be over them: the
    # model server's own memory growing is such a change.
    machine = CacheMachine(Budgets(None, 100, None, 1000))
    first = _load(machine, 0, "a", 30)
    _load(machine, 1, "b", 30)
    _commands(machine)
    machine.set_base_memory(50, None)  # 50 + 60 > 100
    assert machine.request(2, "b").state is ModelState.LOADED
    machine.done(machine.models["b"])
    (unload,) = [c for c in _commands(machine) if isinstance(c, Unload)]
    assert unload.entry is first
