"""One simulated instance: the cache's per-model state machine, driven by timed events.

Each instance keeps what the live cache keeps for each model (state, least-recently-used
order, pins as the time its last request ends, the one transition in flight) and asks the
very `EvictionPolicy` the live cache asks which model to unload and whether there is room.
The rules are the cache's (`cache/manager.py`):

- A request is a hit when its model is loaded with no transition in flight; otherwise it
  waits for the model's one transition (single flight), starting it if there is none (after
  any unload of that model still in flight).
- A transition downloads if the model is not on disk (in a download slot), then deletes idle
  on-disk-only models until disk fits; then makes room by count (the least recently used idle
  model's unload starts and the load goes on beside it) and, once the model's memory is known
  from an earlier load, by memory (unloads the load waits for); loads (in a load slot); then
  unloads until memory fits. Slots are taken first come, first served, as the cache's are.
- A request that waited longer than the ready timeout is answered 429; the load carries on.
- With the model cache disabled, a model is unloaded and deleted when its last request ends.

Events (transition steps, ends of requests) are processed in time order before each arrival.
Within one step, the unloads it waits for run one after another, as the cache awaits them.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from mme_local.cache.policy import EvictionPolicy

if TYPE_CHECKING:
    from mme_local.capacity.simulator import ModelCosts, SimConfig

_REMOTE, _ON_DISK, _LOADED = 0, 1, 2
_BEGIN, _DOWNLOADED, _LOADED_EVENT, _RELEASE, _DOWNLOAD_SLOT, _LOAD_SLOT = 0, 1, 2, 3, 4, 5

# Called once per request when its wait is known: (request index, wait s or None for a 429).
Answer = Callable[[int, "float | None"], None]


class _Pool:
    """Slots for downloads or loads: at most `limit` at once (None: no limit), then a queue."""

    def __init__(self, limit: int | None) -> None:
        self.free = limit
        self.queue: deque[Entry] = deque()

    def take(self, entry: Entry) -> bool:
        """True if `entry` may go now; else it waits its turn."""
        if self.free is None:
            return True
        if self.free == 0:
            self.queue.append(entry)
            return False
        self.free -= 1
        return True

    def give_back(self) -> Entry | None:
        """The next in the queue, which takes over the slot; None if no one waits."""
        if self.free is None:
            return None
        if self.queue:
            return self.queue.popleft()
        self.free += 1
        return None


class Entry:
    """One model on one instance; satisfies the policy's `Candidate`."""

    __slots__ = (
        "busy_until",
        "disk",
        "inst",
        "known",
        "model",
        "pending",
        "ready_at",
        "recorded",
        "state",
        "unloaded_at",
        "waiters",
    )

    def __init__(self, model: int, inst: Instance) -> None:
        self.model = model
        self.inst = inst
        self.state = _REMOTE
        self.pending = False
        """A download or load is in flight."""
        self.ready_at = 0.0
        self.busy_until = 0.0
        """When the last request on it ends: pinned until then."""
        self.unloaded_at = 0.0
        """When its last unload ends: a transition until then."""
        self.disk = 0
        self.known = False
        """Memory measured by an earlier load (the cache checks memory before a load then)."""
        self.waiters: list[tuple[int, float, float]] = []
        """(request index, arrival, answer time) of requests waiting for the transition."""
        self.recorded = -1.0
        """The recorded end of this transition, when replaying a recorded run."""

    @property
    def evictable(self) -> bool:
        now = self.inst.now
        return (
            self.state == _LOADED
            and not self.pending
            and self.ready_at <= now
            and self.busy_until <= now
        )

    @property
    def deletable(self) -> bool:
        now = self.inst.now
        return (
            self.state == _ON_DISK
            and not self.pending
            and self.unloaded_at <= now
            and self.busy_until <= now
        )

    @property
    def disk_bytes(self) -> int:
        return self.disk


class Instance:
    def __init__(self, config: SimConfig, costs: ModelCosts, answer: Answer) -> None:
        self.policy = EvictionPolicy(config.budgets)
        self.costs = costs
        self.config = config
        self.answer = answer
        self.now = 0.0
        self.entries: dict[int, Entry] = {}
        # Least recently used first, as the cache's entries; the policy reads these.
        self.loaded: OrderedDict[int, Entry] = OrderedDict()
        self.on_disk: OrderedDict[int, Entry] = OrderedDict()
        self.events: list[tuple[float, int, int, Entry]] = []
        self._seq = 0
        self.downloads_pool = _Pool(config.parallel_downloads)
        self.loads_pool = _Pool(config.parallel_loads)
        self.queued_loads = 0
        self.host_loaded = self.gpu_loaded = 0
        self.freeing: list[tuple[float, int, int]] = []
        self.host_freeing = self.gpu_freeing = 0
        self.disk_used = 0
        self.peak_host = self.peak_gpu = 0
        self.hits = self.not_ready = self.loads = self.unloads = 0
        self.downloads = self.deletions = self.over_budget = 0

    # ----- arrivals -------------------------------------------------------------------------

    def request(self, index: int, t: float, model: int, service_s: float, recorded: float) -> None:
        """One request; `recorded` is its cold-start wait in a recorded run (-1 if none)."""
        if self.events and self.events[0][0] <= t:
            self.advance(t)
        self.now = t
        entry = self.entries.get(model)
        if entry is None:
            entry = self.entries[model] = Entry(model, self)
        if entry.state == _LOADED and not entry.pending:
            # Still in its after-load memory check until ready_at: a wait, not a hit.
            start = max(t, entry.ready_at)
            self.hits += start == t
            self._served(entry, start, service_s)
            self.answer(index, start - t)
            return
        entry.waiters.append((index, t, service_s))
        if not entry.pending:
            entry.pending = True
            entry.recorded = t + recorded if recorded >= 0 else -1.0
            self._push(max(t, entry.unloaded_at), _BEGIN, entry)

    def holds(self, model: int) -> bool:
        entry = self.entries.get(model)
        return entry is not None and (entry.state == _LOADED or entry.pending)

    def busy(self, model: int, t: float) -> bool:
        """Loaded and answering a request at `t` (a load in flight is not busy: wait on it)."""
        entry = self.entries[model]
        return entry.state == _LOADED and not entry.pending and entry.busy_until > t

    def advance(self, until: float) -> None:
        """Process every event up to `until`, in time order."""
        events = self.events
        while events and events[0][0] <= until:
            at, _, kind, entry = heapq.heappop(events)
            self.now = at
            if self.freeing:
                self._freed(at)
            if kind == _BEGIN:
                self._begin(entry)
            elif kind == _DOWNLOAD_SLOT:
                self._download(entry)
            elif kind == _LOAD_SLOT:
                self.queued_loads -= 1
                self._load_call(entry)
            elif kind == _DOWNLOADED:
                self._downloaded(entry)
            elif kind == _LOADED_EVENT:
                self._loaded(entry)
            else:
                self._release(entry, at)

    # ----- transition steps -------------------------------------------------------------------

    def _push(self, at: float, kind: int, entry: Entry) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, entry))

    def _begin(self, entry: Entry) -> None:
        if entry.state != _REMOTE:
            self._load(entry)
        elif self.downloads_pool.take(entry):
            self._download(entry)

    def _download(self, entry: Entry) -> None:
        self.downloads += 1
        # A recorded cold start's wait covers its download: the load ends on time.
        took = 0.0 if entry.recorded >= 0 else self.costs.download_s[entry.model]
        self._push(self.now + took, _DOWNLOADED, entry)

    def _downloaded(self, entry: Entry) -> None:
        following = self.downloads_pool.give_back()
        if following is not None:
            self._push(self.now, _DOWNLOAD_SLOT, following)
        entry.state = _ON_DISK
        entry.disk = self.costs.disk_bytes[entry.model]
        self.disk_used += entry.disk
        if self.config.budgets.disk_bytes is not None:
            for victim in list(
                self.policy.disk_victims(self.on_disk.values(), self.disk_used, entry)
            ):
                self._delete(victim)
                self.deletions += 1
        self._load(entry)

    def _load(self, entry: Entry) -> None:
        policy, model = self.policy, entry.model
        # Out of the disk pass's list while its transition runs (it can't be deleted then);
        # back at the most recent end when loaded, where its first answer would put it.
        self.on_disk.pop(model, None)
        while policy.count_full(len(self.loaded) + self.queued_loads):
            if not self._evict(entry, wait=False):
                break
        host, gpu = self.costs.host_bytes[model], self.costs.gpu_bytes[model]
        if entry.known and host:
            while policy.memory_short(self._host_used(), self._gpu_used(gpu), host):
                if not self._evict(entry, wait=True):
                    break
        entry.state = _LOADED
        if self.loads_pool.take(entry):
            self._load_call(entry)
        else:
            # Loading (it counts against the model budget) but never a victim: kept out of
            # the list the policy scans, which keeps each scan short under a long queue.
            self.queued_loads += 1

    def _load_call(self, entry: Entry) -> None:
        self.loaded[entry.model] = entry
        # Memory counts from the load call on: a model queued for a load slot holds none.
        self.host_loaded += self.costs.host_bytes[entry.model]
        self.gpu_loaded += self.costs.gpu_bytes[entry.model]
        self.loads += 1
        if entry.recorded >= 0:
            self._push(max(self.now, entry.recorded), _LOADED_EVENT, entry)
        else:
            self._push(self.now + self.costs.load_s[entry.model], _LOADED_EVENT, entry)

    def _loaded(self, entry: Entry) -> None:
        loaded_at = self.now
        following = self.loads_pool.give_back()
        if following is not None:
            self._push(self.now, _LOAD_SLOT, following)
        self._peaks()
        while self.policy.memory_short(self._host_used(), self._gpu_used(0)):
            if not self._evict(entry, wait=True):
                break
        entry.known = True
        entry.pending = False
        self.on_disk[entry.model] = entry
        entry.ready_at = self.now if entry.recorded < 0 else loaded_at
        self.loaded.move_to_end(entry.model)
        for index, arrived, service_s in entry.waiters:
            wait = entry.ready_at - arrived
            if wait > self.config.ready_timeout_s:
                self.not_ready += 1
                self.answer(index, None)
            else:
                self._served(entry, entry.ready_at, service_s)
                self.answer(index, wait)
        entry.waiters = []

    def _served(self, entry: Entry, start: float, service_s: float) -> None:
        end = start + service_s
        if end > entry.busy_until:
            entry.busy_until = end
        self.loaded.move_to_end(entry.model)
        if entry.model in self.on_disk:
            self.on_disk.move_to_end(entry.model)
        if not self.config.cache_enabled:
            self._push(end, _RELEASE, entry)

    def _evict(self, keep: Entry, wait: bool) -> bool:
        """Unload the policy's victim; False (a load over budget) if every model is in use."""
        victim = self.policy.victim(self.loaded.values(), keep)
        if victim is None:
            self.over_budget += 1
            return False
        self._unload(victim, wait)
        return True

    def _unload(self, victim: Entry, wait: bool) -> None:
        model = victim.model
        del self.loaded[model]
        host, gpu = self.costs.host_bytes[model], self.costs.gpu_bytes[model]
        self.host_loaded -= host
        self.gpu_loaded -= gpu
        victim.state = _ON_DISK
        victim.unloaded_at = self.now + self.costs.unload_s[model]
        self.unloads += 1
        heapq.heappush(self.freeing, (victim.unloaded_at, host, gpu))
        self.host_freeing += host
        self.gpu_freeing += gpu
        if wait:
            self.now = victim.unloaded_at
            self._freed(self.now)

    def _delete(self, entry: Entry) -> None:
        self.disk_used -= entry.disk
        entry.disk = 0
        entry.state = _REMOTE
        del self.on_disk[entry.model]

    def _release(self, entry: Entry, at: float) -> None:
        """Model cache disabled: unload and delete once the model's last request has ended."""
        if entry.busy_until == at and entry.state == _LOADED and not entry.pending:
            self._unload(entry, wait=False)
            self._delete(entry)

    # ----- measurements ------------------------------------------------------------------------

    def _freed(self, t: float) -> None:
        while self.freeing and self.freeing[0][0] <= t:
            _, host, gpu = heapq.heappop(self.freeing)
            self.host_freeing -= host
            self.gpu_freeing -= gpu

    def _host_used(self) -> int:
        return self.config.base_host_bytes + self.host_loaded + self.host_freeing

    def _gpu_used(self, adding: int) -> int | None:
        base = self.config.base_gpu_bytes
        if base is None:
            return None
        return base + self.gpu_loaded + self.gpu_freeing + adding

    def _peaks(self) -> None:
        self.peak_host = max(self.peak_host, self._host_used())
        gpu = self._gpu_used(0)
        if gpu is not None:
            self.peak_gpu = max(self.peak_gpu, gpu)
