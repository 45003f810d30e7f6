"""The recovery benchmark's bookkeeping: phases read from the controller's log, the table.

Each phase is the first line the controller logs for it after the kill (its `asctime`, to
the millisecond); the load call's start is the cache's "loaded X in N s" line minus N.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# The controller's log lines that mark each phase: (phase, pattern on "logger: message").
MARKERS: list[tuple[str, re.Pattern[str]]] = [
    ("exit noticed", re.compile(r"runtime\.supervisor: tritonserver exited")),
    ("process started", re.compile(r"runtime\.embedded: starting \S*tritonserver")),
    ("Triton ready", re.compile(r"tritonserver \S+ ready at")),
    ("cache told runtime_up", re.compile(r"runtime\.supervisor: model server restarted")),
]
LOADED = re.compile(r"cache\.manager: loaded (?P<target>\S+) in (?P<seconds>[0-9.]+) s")
LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ (?P<text>.*)$")
PHASES = [
    "exit noticed",
    "process started",
    "Triton ready",
    "cache told runtime_up",
    "model load call",
    "load done",
    "first 200",
]


@dataclass(frozen=True)
class LogLine:
    at: float
    """Wall-clock seconds (time.time())."""
    text: str


@dataclass
class Kill:
    at: float
    phases: dict[str, float] = field(default_factory=dict)
    """Phase -> wall-clock time, for the phases found."""

    def steps(self) -> list[tuple[str, float | None]]:
        """(phase, seconds since the previous phase found), in order."""
        previous = self.at
        out: list[tuple[str, float | None]] = []
        for phase in PHASES:
            moment = self.phases.get(phase)
            out.append((phase, None if moment is None else moment - previous))
            previous = previous if moment is None else moment
        return out

    @property
    def total(self) -> float | None:
        first = self.phases.get("first 200")
        return None if first is None else first - self.at


def read_log(path: Path) -> list[LogLine]:
    return parse_log(path.read_text(errors="replace"))


def parse_log(text: str) -> list[LogLine]:
    """The log's own lines (a multi-line message's continuation lines have no time)."""
    lines = []
    for raw in text.splitlines():
        match = LINE.match(raw)
        if match:
            stamp = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            lines.append(LogLine(stamp, match["text"]))
    return lines


def attribute(kill: Kill, until: float, lines: list[LogLine], target: str) -> None:
    """Fill `kill.phases` from the first marker lines logged after it (and before `until`)."""
    window = [line for line in lines if kill.at - 0.002 <= line.at < until]
    for phase, pattern in MARKERS:
        found = next((line.at for line in window if pattern.search(line.text)), None)
        if found is not None:
            kill.phases[phase] = found
    for line in window:
        loaded = LOADED.search(line.text)
        if loaded and loaded["target"] == target:
            kill.phases["load done"] = line.at
            kill.phases["model load call"] = line.at - float(loaded["seconds"])
            break


def first_load(lines: list[LogLine], target: str) -> float | None:
    """Seconds of the first load of `target` the log records (no crash around it)."""
    for line in lines:
        loaded = LOADED.search(line.text)
        if loaded and loaded["target"] == target:
            return float(loaded["seconds"])
    return None


@dataclass
class RecoveryResult:
    model: str
    kills: list[Kill]
    first_load_s: float | None
    direct: dict[str, list[float]] = field(default_factory=dict)
    """Loads straight to an idle Triton: how Triton was started -> seconds per load."""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def render(result: RecoveryResult) -> str:
    header = "| kill | " + " | ".join(f"→ {p}" for p in PHASES) + " | kill → first 200 |"
    rows = [header, "|" + "---:|" * (len(PHASES) + 2)]
    for number, kill in enumerate(result.kills, 1):
        steps = [_ms(seconds) for _, seconds in kill.steps()]
        rows.append(f"| {number} | " + " | ".join(steps) + f" | **{_ms(kill.total)}** |")
    medians = []
    for index in range(len(PHASES)):
        values = [s for k in result.kills if (s := k.steps()[index][1]) is not None]
        medians.append(_ms(statistics.median(values)) if values else "-")
    totals = [t for k in result.kills if (t := k.total) is not None]
    median_total = _ms(statistics.median(totals)) if totals else "-"
    rows.append("| median | " + " | ".join(medians) + f" | **{median_total}** |")
    first = "-" if result.first_load_s is None else f"{result.first_load_s:.2f} s"
    lines = [
        "\n".join(rows),
        "",
        "Milliseconds from the previous phase. The same model's own load, no crash around it: "
        f"{first} (its first load in this run, through the gateway).",
    ]
    if result.direct:
        lines += ["", "| loads straight to an idle Triton | loads | mean | min | max |"]
        lines.append("|---|---:|---:|---:|---:|")
        for how, times in result.direct.items():
            if not times:
                lines.append(f"| {how} | 0 | - | - | - |")
                continue
            lines.append(
                f"| {how} | {len(times)} | {statistics.mean(times):.2f} s | "
                f"{min(times):.2f} s | {max(times):.2f} s |"
            )
    return "\n".join(lines)
