"""Model-based test of the cache's state machine: random interleavings of every event it can
see, against a fake container and a fake disk, with the invariants checked after every step.

The machine is driven exactly as the live executor drives it (`cache.manager`): each command in
its outbox becomes work in flight, and each piece of work ends, in any order Hypothesis picks,
as a success, a failure, a 507 or a timeout. At the end everything in flight is completed and
every request must have been answered exactly once, with no model left in a transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from mme_local.cache.entry import ModelEntry, ModelState
from mme_local.cache.machine import (
    Answer,
    CacheMachine,
    Delete,
    Download,
    Evicted,
    Load,
    Probe,
    Unload,
)
from mme_local.cache.policy import Budgets
from mme_local.runtime.errors import InsufficientMemory

MODELS = 5
MISSING = "missing"
"""A TargetModel with no object under the prefix: its probe fails."""


@dataclass(frozen=True)
class Model:
    archive: int
    extracted: int
    memory: int


@dataclass
class InFlight:
    probes: list[ModelEntry] = field(default_factory=list)
    downloads: list[tuple[ModelEntry, int | None]] = field(default_factory=list)
    loads: list[ModelEntry] = field(default_factory=list)
    unloads: list[tuple[ModelEntry, bool]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.probes) + len(self.downloads) + len(self.loads) + len(self.unloads)


models_strategy = st.lists(
    st.builds(
        Model,
        archive=st.integers(10, 200),
        extracted=st.integers(10, 400),
        memory=st.integers(0, 300),
    ),
    min_size=MODELS,
    max_size=MODELS,
)


class CacheMachineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine: CacheMachine
        self.models: dict[str, Model] = {}
        self.work = InFlight()
        self.container: set[str] = set()
        """Names the fake container has loaded."""
        self.disk: dict[str, int] = {}
        """Names with files in the fake cache folder, and their bytes."""
        self.waiting: dict[int, ModelEntry] = {}
        self.active: dict[int, ModelEntry] = {}
        """Requests answered (ready or error) whose handler has not ended yet."""
        self.answered: set[int] = set()
        self.issued = 0
        self.over_budget_seen = 0

    @initialize(
        models=models_strategy,
        max_loaded=st.none() | st.integers(1, 3),
        host_budget=st.none() | st.integers(100, 800),
        disk_budget=st.none() | st.integers(150, 1200),
        downloads=st.none() | st.integers(1, 2),
        loads=st.none() | st.integers(1, 2),
        cache_enabled=st.booleans(),
    )
    def start(
        self,
        models: list[Model],
        max_loaded: int | None,
        host_budget: int | None,
        disk_budget: int | None,
        downloads: int | None,
        loads: int | None,
        cache_enabled: bool,
    ) -> None:
        self.models = {f"m{i}": model for i, model in enumerate(models)}
        self.budgets = Budgets(max_loaded, host_budget, disk_budget, 1000)
        self.machine = CacheMachine(
            self.budgets,
            cache_enabled=cache_enabled,
            max_parallel_downloads=downloads,
            max_parallel_loads=loads,
        )

    # ----- the executor's part ----------------------------------------------------------------

    def _drain(self) -> None:
        outbox = self.machine.outbox
        while outbox:
            commands = list(outbox)
            outbox.clear()
            for command in commands:
                self._perform(command)

    def _perform(self, command: object) -> None:
        work = self.work
        if isinstance(command, Answer):
            request = command.request
            assert request not in self.answered, f"request {request} answered twice"
            assert self.waiting.pop(request) is command.entry
            self.answered.add(request)
            self.active[request] = command.entry
        elif isinstance(command, Probe):
            work.probes.append(command.entry)
        elif isinstance(command, Download):
            name = command.entry.target_model
            assert name not in self.disk, f"{name} downloaded again while on disk"
            assert all(e is not command.entry for e, _ in work.downloads)
            work.downloads.append((command.entry, command.reserved))
        elif isinstance(command, Load):
            name = command.entry.target_model
            assert name in self.disk, f"{name} loaded with no files"
            assert name not in self.container, f"{name} loaded twice"
            assert all(e is not command.entry for e in work.loads)
            work.loads.append(command.entry)
        elif isinstance(command, Unload):
            name = command.entry.target_model
            assert command.ghost or name in self.container, f"{name} unloaded, not loaded"
            work.unloads.append((command.entry, command.ghost))
        elif isinstance(command, Delete):
            entry = command.entry
            name = entry.target_model
            assert name not in self.container, f"{name} deleted while loaded"
            assert all(e is not entry for e in work.loads), f"{name} deleted mid-load"
            assert all(e is not entry for e, _ in work.unloads), f"{name} deleted mid-unload"
            self.disk.pop(name, None)
        else:
            assert isinstance(command, Evicted)

    # ----- requests ---------------------------------------------------------------------------

    @rule(index=st.integers(0, MODELS))
    def request(self, index: int) -> None:
        name = MISSING if index == MODELS else f"m{index}"
        request = self.issued
        self.issued += 1
        entry = self.machine.request(request, name)
        if entry.state is ModelState.LOADED and request not in entry.waiters:
            self.answered.add(request)
            self.active[request] = entry
        else:
            self.waiting[request] = entry
        self._drain()

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def request_ends(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(sorted(self.active)))
        self.machine.done(self.active.pop(request))
        self._drain()

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def request_gives_up(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(sorted(self.waiting)))
        entry = self.waiting.pop(request)
        assert self.machine.abandon(request, entry)
        self.answered.add(request)
        self._drain()

    # ----- work ending --------------------------------------------------------------------------

    @precondition(lambda self: self.work.probes)
    @rule(data=st.data())
    def probe_ends(self, data: st.DataObject) -> None:
        entry = self.work.probes.pop(data.draw(st.integers(0, len(self.work.probes) - 1)))
        model = self.models.get(entry.target_model)
        if model is None:
            self.machine.probe_failed(entry, LookupError("no such object"))
        else:
            self.machine.probed(entry, model.archive)
        self._drain()

    @precondition(lambda self: self.work.downloads)
    @rule(data=st.data(), fails=st.booleans())
    def download_ends(self, data: st.DataObject, fails: bool) -> None:
        downloads = self.work.downloads
        entry, reserved = downloads.pop(data.draw(st.integers(0, len(downloads) - 1)))
        model = self.models.get(entry.target_model)
        if model is None or fails:
            self.machine.download_failed(entry, OSError("connection reset"), outgrew=False)
        elif reserved is not None and model.extracted > reserved:
            self.machine.download_failed(entry, OSError("outgrew"), outgrew=True)
        else:
            self.disk[entry.target_model] = model.extracted
            self.machine.downloaded(entry, model.extracted, "etag")
        self._drain()

    @precondition(lambda self: self.work.loads)
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "ok", "fails", "507", "timeout"]))
    def load_ends(self, data: st.DataObject, outcome: str) -> None:
        loads = self.work.loads
        entry = loads.pop(data.draw(st.integers(0, len(loads) - 1)))
        machine = self.machine
        if outcome == "ok":
            self.container.add(entry.target_model)
            machine.loaded(entry)
            self._drain()
            machine.measured(entry, self.models[entry.target_model].memory)
        elif outcome == "fails":
            machine.load_failed(entry, RuntimeError("bad model"))
        elif outcome == "507":
            machine.load_rejected_for_memory(entry, InsufficientMemory("out of memory"))
        else:
            self.container.add(entry.target_model)  # the container may have finished it
            machine.load_timed_out(entry, TimeoutError("load timed out"))
        self._drain()

    @precondition(lambda self: self.work.unloads)
    @rule(data=st.data())
    def unload_ends(self, data: st.DataObject) -> None:
        unloads = self.work.unloads
        entry, ghost = unloads.pop(data.draw(st.integers(0, len(unloads) - 1)))
        self.container.discard(entry.target_model)
        self.machine.unloaded(entry, ghost)
        self._drain()

    # ----- invariants ---------------------------------------------------------------------------

    @invariant()
    def budgets_hold(self) -> None:
        if not hasattr(self, "machine"):
            return
        machine, budgets = self.machine, self.budgets
        entries = list(machine.models.values())
        occupying = sum(e.state in (ModelState.LOADED, ModelState.LOADING) for e in entries)
        assert machine.occupying == occupying
        if budgets.max_loaded_models is not None and occupying > budgets.max_loaded_models:
            # Only when every loaded model is in use, and then it is counted (and logged).
            assert machine.over_budget_loads > self.over_budget_seen or all(
                e.pins for e in entries if e.state is ModelState.LOADED
            )
        self.over_budget_seen = machine.over_budget_loads
        if budgets.disk_bytes is not None:
            assert machine.disk_used + machine.disk_reserved <= budgets.disk_bytes
        assert machine.disk_reserved == sum(e.disk_reserved for e in entries)
        assert machine.host_held == sum(e.memory_bytes for e in entries if e.holds_memory)

    @invariant()
    def the_machine_sees_what_the_container_and_disk_hold(self) -> None:
        if not hasattr(self, "machine"):
            return
        machine = self.machine
        loaded = {e.target_model for e in machine.models.values() if e.state is ModelState.LOADED}
        unloading = {e.target_model for e, _ in self.work.unloads}
        assert loaded <= self.container, "the machine counts a model the container lacks"
        assert self.container <= loaded | unloading, "the container holds a model unaccounted"
        assert machine.disk_used == sum(self.disk.values())
        for name, size in self.disk.items():
            entry = machine.models.get(name)
            assert entry is not None and entry.disk_bytes == size
        for entry in machine.models.values():
            if entry.target_model not in self.disk:
                assert entry.disk_bytes == 0
                assert entry.state in (ModelState.REMOTE, ModelState.DOWNLOADING)

    def teardown(self) -> None:
        """Let every piece of work end well and every request end: nothing may be left."""
        if not hasattr(self, "machine"):
            return
        for _ in range(10_000):
            work = self.work
            if work.unloads:
                entry, ghost = work.unloads.pop(0)
                self.container.discard(entry.target_model)
                self.machine.unloaded(entry, ghost)
            elif work.loads:
                entry = work.loads.pop(0)
                self.container.add(entry.target_model)
                self.machine.loaded(entry)
                self._drain()
                self.machine.measured(entry, self.models[entry.target_model].memory)
            elif work.downloads:
                entry, reserved = work.downloads.pop(0)
                model = self.models.get(entry.target_model)
                if model is not None and (reserved is None or model.extracted <= reserved):
                    self.disk[entry.target_model] = model.extracted
                    self.machine.downloaded(entry, model.extracted, "etag")
                else:
                    outgrew = model is not None
                    self.machine.download_failed(entry, OSError("failed"), outgrew=outgrew)
            elif work.probes:
                entry = work.probes.pop(0)
                model = self.models.get(entry.target_model)
                if model is None:
                    self.machine.probe_failed(entry, LookupError("no such object"))
                else:
                    self.machine.probed(entry, model.archive)
            elif self.active:
                self.machine.done(self.active.pop(min(self.active)))
            else:
                break
            self._drain()
            self.budgets_hold()
            self.the_machine_sees_what_the_container_and_disk_hold()
        assert not self.waiting, f"requests never answered: {sorted(self.waiting)}"
        assert len(self.answered) == self.issued
        entries = self.machine.models.values()
        stuck = [(e.target_model, e.state, e.waiting) for e in entries if e.busy]
        assert not stuck, f"models left in a transition with no work in flight: {stuck}"
        assert self.machine.disk_reserved == 0
        budget = self.budgets.host_memory_bytes
        if budget is not None and self.machine.loaded_count() > 1:
            assert self.machine.host_used <= budget, "idle models kept over the memory budget"


CacheMachineModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_cache_machine = CacheMachineModel.TestCase
