"""The fault soak's load: client threads, a thread of hostile requests, a loop-lag sampler.

A quarter of the clients (at least one) call only the cold models, one after another, so the
cache churns; the others call the two hot models at a steady rate. Clients that mixed the two would
spend nearly all their time waiting on cold loads, leave the hot models untouched and let LRU
evict them: the hot latency would then measure reloads, not serving during churn.

Every model answers y = x * factor with its own factor, so a 200 carrying another model's
factor is a wrong answer, not a success.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from bench.soak_abuse import KINDS, send_abuse
from mme_local.metrics_reader import read_samples
from tests.support import kserve_body, kserve_output

VALUES = [1.0, 2.5]
BODY = kserve_body(VALUES)


@dataclass(frozen=True)
class Call:
    target: str
    started: float
    ended: float
    status: int
    """The HTTP status; 0 when the connection failed before an answer."""
    error: str = ""
    """The x-amzn-ErrorType code or the transport error's name."""
    wrong: bool = False
    """A 200 whose output is not this model's."""


@dataclass
class Models:
    factors: dict[str, float]
    hot: list[str]
    cold: list[str]


def invoke(client: httpx.Client, endpoint: str, target: str, factor: float) -> Call:
    started = time.monotonic()
    try:
        response = client.post(
            f"/endpoints/{endpoint}/invocations",
            content=BODY,
            headers={"Content-Type": "application/json", "X-Amzn-SageMaker-Target-Model": target},
        )
    except httpx.HTTPError as error:
        return Call(target, started, time.monotonic(), 0, type(error).__name__)
    ended = time.monotonic()
    if response.status_code != 200:
        code = response.headers.get("x-amzn-ErrorType", "").split(":")[0]
        return Call(target, started, ended, response.status_code, code)
    try:
        wrong = kserve_output(response.content) != [v * factor for v in VALUES]
    except (ValueError, KeyError, IndexError, TypeError):
        wrong = True
    return Call(target, started, ended, 200, wrong=wrong)


@dataclass
class Traffic:
    url: str
    endpoint: str
    models: Models
    clients: int
    hot_rate: float = 20.0
    """Calls per second of each hot client."""
    cold_pause_s: float = 0.5
    """A cold client's pause between calls. Without it, the model a cold client has just
    used is always the most recently used one when it asks for the next, and LRU evicts a
    hot model instead."""
    abuse_every_s: float = 0.5
    lag_every_s: float = 1.0
    calls: list[Call] = field(default_factory=list)
    abuse: dict[str, Counter[int]] = field(default_factory=dict)
    lag_samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        cold = max(1, self.clients // 4)
        loops: list[Callable[[], None]] = [
            partial(self._client_loop, n, n >= cold) for n in range(self.clients)
        ]
        for loop in [*loops, self._abuse_loop, self._lag_loop]:
            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)

    def _client_loop(self, number: int, hot: bool) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=self.url, timeout=70) as client:
            while not self._stop.is_set():
                target = rng.choice(self.models.hot if hot else self.models.cold)
                call = invoke(client, self.endpoint, target, self.models.factors[target])
                self.calls.append(call)  # list.append is atomic: no lock needed
                if hot:
                    time.sleep(max(0.0, call.started + 1 / self.hot_rate - time.monotonic()))
                else:
                    time.sleep(self.cold_pause_s)

    def _abuse_loop(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        index = 0
        while not self._stop.wait(self.abuse_every_s):
            kind = KINDS[index % len(KINDS)]
            index += 1
            try:
                status = send_abuse(port, kind, self.endpoint, self.models.hot[0])
            except OSError:
                status = -1  # could not even connect
            self.abuse.setdefault(kind, Counter())[status] += 1

    def _lag_loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.wait(self.lag_every_s):
                try:
                    samples = read_samples(client.get("/metrics").text)
                except httpx.HTTPError:
                    continue
                lag = samples.get("mme_event_loop_lag_seconds")
                if lag is not None:
                    self.lag_samples.append(lag)
