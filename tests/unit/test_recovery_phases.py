"""The recovery benchmark reads each phase of a restart from the controller's log."""

from __future__ import annotations

from datetime import datetime

import pytest

from bench.recovery_phases import (
    PHASES,
    Kill,
    RecoveryResult,
    attribute,
    first_load,
    parse_log,
    render,
)

LOG = """\
2026-12-04 00:51:10,000 INFO mme_local.cache.manager: loaded hot.tar.gz in 1.50 s (35 MiB)
2026-12-04 00:51:13,224 ERROR mme_local.runtime.supervisor: tritonserver exited with status -9; \
last log lines:
I1204 00:51:12.259031 21737 sagemaker_server.cc:241] "Invoking SageMaker TargetModel: hot"
2026-12-04 00:51:13,225 WARNING mme_local.runtime.supervisor: restarting the model server \
(attempt 1)
2026-12-04 00:51:13,286 INFO mme_local.runtime.embedded: starting /opt/bin/tritonserver --x
2026-12-04 00:51:13,383 INFO mme_local.runtime.local_triton: tritonserver 2.51.0 ready at \
http://127.0.0.1:1
2026-12-04 00:51:13,384 WARNING mme_local.runtime.supervisor: model server restarted; models \
will load again on their next request
2026-12-04 00:51:14,100 INFO mme_local.cache.manager: loaded cold.tar.gz in 0.60 s (35 MiB)
2026-12-04 00:51:15,296 INFO mme_local.cache.manager: loaded hot.tar.gz in 1.85 s (36 MiB)
"""


def _at(clock: str) -> float:
    return datetime.strptime(f"2026-12-04 {clock}", "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_each_phase_is_the_first_line_logged_for_it_after_the_kill() -> None:
    lines = parse_log(LOG)
    assert len(lines) == 8, "a message's continuation lines are not log lines"
    kill = Kill(_at("00:51:13,216"))
    kill.phases["first 200"] = _at("00:51:15,330")
    attribute(kill, float("inf"), lines, "hot.tar.gz")
    steps = dict(kill.steps())
    assert list(steps) == PHASES
    assert steps["exit noticed"] == pytest.approx(0.008, abs=1e-5)
    assert steps["process started"] == pytest.approx(0.062, abs=1e-5)
    assert steps["Triton ready"] == pytest.approx(0.097, abs=1e-5)
    assert steps["cache told runtime_up"] == pytest.approx(0.001, abs=1e-5)
    # The hot model's load after the kill, not the cold one's nor the one before the kill.
    assert steps["model load call"] == pytest.approx(0.062, abs=1e-5)
    assert steps["load done"] == pytest.approx(1.85, abs=1e-5)
    assert steps["first 200"] == pytest.approx(0.034, abs=1e-5)
    assert kill.total == pytest.approx(2.114, abs=1e-5)
    assert first_load(lines, "hot.tar.gz") == 1.5


def test_a_phase_not_logged_before_the_next_kill_is_left_out() -> None:
    lines = parse_log(LOG)
    kill = Kill(_at("00:51:13,216"))
    attribute(kill, _at("00:51:13,300"), lines, "hot.tar.gz")
    assert set(kill.phases) == {"exit noticed", "process started"}
    table = render(RecoveryResult("doubler", [kill], None))
    assert "| 1 | 8 | 62 | - | - | - | - | - | **-** |" in table
