"""The fault soak, short: churn plus a Triton SIGKILL, an S3 outage and hostile requests.

Asserts the zero-counts only; the timings belong to `bench/soak.py` and docs/benchmarks.md.
"""

from __future__ import annotations

import pytest

from bench.soak import SoakConfig, run_soak

pytestmark = pytest.mark.integration


def test_short_fault_soak_gives_no_wrong_answer_no_stray_error_and_no_leftover() -> None:
    result = run_soak(SoakConfig(duration_s=28, clients=4, models=6, capacity=3, outage_s=6))
    context = f"outside the windows: {result.outside[:5]}\ncontroller log:\n{result.log_tail}"

    assert result.wrong == 0, context
    assert result.outside == [], context
    assert result.left_in_group == [], context
    assert result.exit_code == 0, context
    assert result.abuse_unexpected() == 0, (result.abuse, context)

    # The faults really happened and the endpoint came back from each.
    assert result.runtime_back_at is not None, "/ping never answered 200 after the kill"
    assert result.recovered_at is not None, "no 200 after Triton was killed"
    assert result.outage_probes, "no cold request was sent during the S3 outage"
    assert all(c.status == 530 for c in result.outage_probes), result.outage_probes
    assert result.proxy_refused + result.proxy_cut > 0, "the outage never met a connection"
    assert [c.status for c in result.after_outage_probes] == [200, 200], result.after_outage_probes
    assert result.unloads > 0, "the cache never evicted: no churn"
    assert all(result.abuse.get(kind) for kind in ("mid-body drop", "huge headers")), result.abuse
