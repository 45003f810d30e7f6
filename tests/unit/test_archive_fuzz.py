"""Property-based: generated archives get one verdict from `lint` and from extraction, and
whatever is accepted stays inside the model folder and within the caps (tests/archive_fuzz.py).

A modest number of examples here; `python bench/fuzz_archives.py` runs a longer campaign.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings

from tests.archive_fuzz import Archive, archives, check


@settings(
    max_examples=100,
    # A bound on each archive's time, generous for a loaded machine: they take milliseconds.
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(archives())
def test_lint_and_extraction_agree_and_accepted_archives_stay_inside(archive: Archive) -> None:
    check(archive)
