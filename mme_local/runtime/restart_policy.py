"""How soon to restart a model server that died: at once, unless it keeps failing.

A crash after a stable run is news: restart at once, because every request fails until the
server answers again. A server that dies again soon after a restart, or a restart that fails,
is a loop: each repeat waits twice as long as the one before (from `backoff_s` up to
`max_backoff_s`), so a broken install does not spin the machine. Only a run of `stable_s`
seconds forgives the failures counted so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_s: float = 30.0
    failures: int = field(default=0, init=False)
    """Failures since the last stable run: exits soon after a start, and failed starts."""
    _started_at: float | None = field(default=None, init=False)

    def started(self, now: float) -> None:
        """A start succeeded at `now` (monotonic seconds)."""
        self._started_at = now

    def failed(self, now: float) -> float:
        """The server exited, or a start failed, at `now`: seconds to wait before the next
        start."""
        if self._started_at is not None and now - self._started_at >= self.stable_s:
            self.failures = 0
        # Judged once per run: the failed starts that may follow don't count as stable.
        self._started_at = None
        self.failures += 1
        if self.failures == 1:
            return 0.0
        doublings = min(self.failures - 2, 64)  # past the cap long before; no float overflow
        return float(min(self.backoff_s * 2**doublings, self.max_backoff_s))
