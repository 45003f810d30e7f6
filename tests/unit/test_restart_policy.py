"""When the supervisor restarts a dead model server: at once after an exit that ends a stable
run, with a growing delay only while failures repeat (property-based)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mme_local.runtime.restart_policy import RestartPolicy

BACKOFF, MAX_BACKOFF, STABLE = 0.5, 30.0, 60.0


def _seconds(low: float, high: float) -> st.SearchStrategy[float]:
    # Whole seconds, so that clock arithmetic is exact and "ran STABLE seconds" is unambiguous.
    return st.integers(int(low), int(high)).map(float)


# One event: the server ran for `uptime` seconds after a successful start, then exited (a
# float), or a start attempt failed (None).
events = st.lists(st.one_of(st.none(), _seconds(0, 2 * STABLE)), max_size=40)


@given(events)
def test_a_delay_never_passes_the_cap(sequence: list[float | None]) -> None:
    assert all(0.0 <= delay <= MAX_BACKOFF for delay in _history(sequence))


@given(events, _seconds(STABLE, 10 * STABLE))
def test_an_exit_after_a_stable_run_restarts_at_once(
    sequence: list[float | None], uptime: float
) -> None:
    assert _history([*sequence, uptime])[-1] == 0.0


@given(st.lists(st.one_of(st.none(), _seconds(0, STABLE - 1)), min_size=1, max_size=40))
def test_repeated_failures_back_off_more_and_more(sequence: list[float | None]) -> None:
    # Nothing ran for long: each failure is a repeat of the first.
    delays = _history(sequence)
    assert delays[0] == 0.0, "the first failure is restarted at once"
    assert all(d >= BACKOFF for d in delays[1:]), "a repeat always waits"
    assert delays == sorted(delays), "and never less than the one before"
    for k, delay in enumerate(delays[1:], start=1):
        assert delay == min(BACKOFF * 2 ** (k - 1), MAX_BACKOFF)


@given(events)
def test_only_a_stable_run_forgives(sequence: list[float | None]) -> None:
    # Between two zero delays (immediate restarts) there is always a run of STABLE seconds.
    delays = _history(sequence)
    zeros = [i for i, d in enumerate(delays) if d == 0.0]
    for later in zeros[1:]:
        event = sequence[later]
        assert event is not None and event >= STABLE


def _history(sequence: list[float | None]) -> list[float]:
    """The delays the policy asks for over a history of failures.

    A float is an exit after the server ran that long since its last successful start; None
    is a start attempt that failed (the server never ran).
    """
    policy = RestartPolicy(BACKOFF, MAX_BACKOFF, STABLE)
    now = 1000.0
    policy.started(now)
    delays: list[float] = []
    for i, event in enumerate(sequence):
        if event is not None:
            now += event
        delay = policy.failed(now)
        delays.append(delay)
        now += delay
        following = sequence[i + 1] if i + 1 < len(sequence) else None
        if following is not None:
            policy.started(now)  # this attempt worked; the server then ran `following` s
    return delays
