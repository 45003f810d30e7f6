"""The fault soak's verdict: every call classified against the fault windows, one table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.soak_abuse import EXPECTED
from bench.soak_traffic import Call


@dataclass(frozen=True)
class Window:
    name: str
    start: float
    end: float

    def overlaps(self, call: Call) -> bool:
        return call.started <= self.end and call.ended >= self.start


@dataclass
class SoakResult:
    duration_s: float
    clients: int
    models: int
    capacity: int
    calls: list[Call]
    hot: list[str]
    windows: list[Window]
    kill_at: float | None
    runtime_back_at: float | None
    """When /ping answered 200 again after the kill: Triton restarted, no model loaded yet."""
    recovered_at: float | None
    outage_probes: list[Call]
    after_outage_probes: list[Call]
    proxy_refused: int
    proxy_cut: int
    abuse: dict[str, Counter[int]]
    lag_samples: list[float]
    lag_max_before_s: float
    """The loop's worst lag since start, read just before the traffic began."""
    lag_max_s: float
    """The same gauge at the end: above lag_max_before_s only if the run set a new worst."""
    hot_loads: int
    """Loads of the hot models during the run: after the kill, and after any LRU eviction."""
    loads: float
    unloads: float
    rss_start: int
    rss_end: int
    exit_code: int
    left_in_group: list[int]
    log_tail: str = ""
    outside: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outside = [
            c
            for c in self.calls
            if (c.status != 200) and not any(w.overlaps(c) for w in self.windows)
        ]

    @property
    def wrong(self) -> int:
        probes = self.outage_probes + self.after_outage_probes
        return sum(c.wrong for c in self.calls + probes)

    @property
    def restart_s(self) -> float | None:
        if self.kill_at is None or self.runtime_back_at is None:
            return None
        return self.runtime_back_at - self.kill_at

    @property
    def recovery_s(self) -> float | None:
        if self.kill_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.kill_at

    def in_window(self, name: str) -> int:
        window = next(w for w in self.windows if w.name == name)
        return sum(1 for c in self.calls if c.status != 200 and window.overlaps(c))

    def hot_latencies(self) -> list[float]:
        """Client-side seconds of the hot models' 200s outside every fault window."""
        return sorted(
            c.ended - c.started
            for c in self.calls
            if c.target in self.hot
            and c.status == 200
            and not any(w.overlaps(c) for w in self.windows)
        )

    def abuse_unexpected(self) -> int:
        return sum(
            n for kind, got in self.abuse.items() for s, n in got.items() if s not in EXPECTED[kind]
        )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _statuses(calls: list[Call]) -> str:
    counts = Counter(f"{c.status} {c.error}".strip() if c.status != 200 else "200" for c in calls)
    return ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())) or "none"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def render(result: SoakResult) -> str:
    """The report table: measure, value, target."""
    hot = result.hot_latencies()
    recovery = result.recovery_s
    restart = result.restart_s
    mib = 1024 * 1024
    abuse = "; ".join(
        f"{kind}: " + ", ".join(f"{s or 'no answer'} ({n})" for s, n in sorted(got.items()))
        for kind, got in result.abuse.items()
    )
    if result.lag_max_s > result.lag_max_before_s:
        lag_run = _ms(result.lag_max_s)
    else:
        lag_run = f"≤ {_ms(result.lag_max_before_s)} (start-up's worst, not exceeded)"
    lag_sampled = max(result.lag_samples, default=float("nan"))
    rows = [
        ("requests (client traffic)", f"{len(result.calls)} in {result.duration_s:.0f} s", ""),
        ("statuses", _statuses(result.calls), ""),
        ("share of calls on the two hot models",
         f"{sum(c.target in result.hot for c in result.calls) / max(1, len(result.calls)):.0%}",
         "80%"),
        ("wrong answers (another model's output)", str(result.wrong), "0"),
        ("non-200 inside the Triton-kill window", str(result.in_window("triton kill")), ""),
        ("non-200 inside the S3-outage window", str(result.in_window("s3 outage")), ""),
        ("**errors outside the fault windows**", str(len(result.outside)), "0"),
        ("Triton SIGKILL → /ping 200 (restarted)",
         f"{restart:.2f} s" if restart is not None else "never", "≤ 1 s"),
        ("Triton SIGKILL → first 200 (restart + the model's reload)",
         f"{recovery:.2f} s" if recovery is not None else "never", "≤ 2 s"),
        ("S3 outage: cold probes during / after", f"{_statuses(result.outage_probes)} / "
         f"{_statuses(result.after_outage_probes)}", "530 / 200"),
        ("S3 outage: slowest cold probe answer during the outage",
         _ms(max((c.ended - c.started for c in result.outage_probes), default=float("nan"))),
         "fails fast"),
        ("S3 outage: connections reset by the proxy",
         f"{result.proxy_refused} refused, {result.proxy_cut} cut", ""),
        ("hostile requests (kind: status (count))", abuse, "4xx, never 2xx/5xx"),
        ("hostile requests answered outside expectations", str(result.abuse_unexpected()), "0"),
        ("models loaded / unloaded during the run", f"{result.loads:.0f} / {result.unloads:.0f}",
         ""),
        (f"hot-model p50 / p90 / p99 during churn ({len(hot)} calls)",
         " / ".join(_ms(percentile(hot, q)) for q in (0.5, 0.9, 0.99)), "p99 ≤ 5 ms"),
        ("hot-model loads during the run (after the kill, after LRU evictions)",
         str(result.hot_loads), ""),
        ("event-loop lag: worst during the run", lag_run, "≤ 5 ms"),
        ("event-loop lag: worst of 1 s samples", _ms(lag_sampled), ""),
        ("controller RSS: start → end (growth)",
         f"{result.rss_start / mib:.1f} → {result.rss_end / mib:.1f} MiB "
         f"({(result.rss_end - result.rss_start) / mib:+.1f} MiB)", ""),
        ("processes left in the controller's group after Ctrl-C",
         str(len(result.left_in_group)), "0"),
        ("containers left", "none started (embedded runtime)", "0"),
        ("controller exit code after Ctrl-C", str(result.exit_code), "0"),
    ]  # fmt: skip
    lines = ["| measure | value | target |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {target} |" for name, value, target in rows]
    return "\n".join(lines)
