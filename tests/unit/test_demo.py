"""The demo's parts that need no endpoint: workload, LRU oracle, counts, report, disk check."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mme_local.demo import DemoConfig, DemoError, DemoReport
from mme_local.demo.counts import measured_counts, metric
from mme_local.demo.disk import DiskNeed, check_disk, demo_needs, extracted_bytes, plan_disk
from mme_local.demo.encoder import Encoder, cosine
from mme_local.demo.oracle import LruOutcome, simulate_lru
from mme_local.demo.report import count_rows, render_table
from mme_local.demo.workload import zipf_workload

MiB = 2**20
GiB = 2**30


def test_lru_counts_hits_loads_and_unloads() -> None:
    # capacity 2: 0 1 load, 0 hits, 2 evicts 1, 1 evicts 0, 2 hits, 0 evicts 2
    outcome = simulate_lru([0, 1, 0, 2, 1, 2, 0], capacity=2)
    assert outcome == LruOutcome(hits=2, loads=5, unloads=3, distinct=3, loaded_at_end=2)


def test_lru_never_evicts_below_capacity() -> None:
    outcome = simulate_lru([3, 1, 3, 2, 1], capacity=5)
    assert outcome == LruOutcome(hits=2, loads=3, unloads=0, distinct=3, loaded_at_end=3)


def test_lru_balances_for_any_workload() -> None:
    sequence = zipf_workload(200, 300, 2.0, seed=7)
    outcome = simulate_lru(sequence, capacity=12)
    assert outcome.loads == len(sequence) - outcome.hits
    assert outcome.unloads == outcome.loads - outcome.loaded_at_end
    assert outcome.loaded_at_end == min(12, outcome.distinct)


def test_zipf_workload_is_seeded_and_in_range() -> None:
    first = zipf_workload(50, 100, 1.5, seed=3)
    assert first == zipf_workload(50, 100, 1.5, seed=3)
    assert first != zipf_workload(50, 100, 1.5, seed=4)
    assert len(first) == 100 and all(0 <= model < 50 for model in first)


def test_metric_sums_label_sets_and_ignores_prefixes() -> None:
    samples = {
        "mme_invocations_total": 5.0,
        'mme_model_evictions_total{reason="count"}': 2.0,
        'mme_model_evictions_total{reason="memory"}': 1.0,
        "mme_model_evictions_total_created": 99.0,
    }
    assert metric(samples, "mme_model_evictions_total") == 3.0
    assert metric(samples, "mme_invocations_total") == 5.0
    assert metric(samples, "absent") == 0.0


def test_report_passes_only_when_counts_and_outputs_agree() -> None:
    config = DemoConfig(models=3, requests=7, capacity=2)
    expected = simulate_lru([0, 1, 0, 2, 1, 2, 0], 2)
    measured = measured_counts(
        {
            "mme_invocations_total": 7,
            "mme_model_cache_hit_total": 2,
            "mme_model_downloading_time_seconds_count": 3,
            "mme_model_loading_time_seconds_count": 5,
            "mme_model_unloading_time_seconds_count": 3,
            "mme_loaded_model_count": 2,
        }
    )
    report = DemoReport(config, expected, measured, similarity=(0.8, 0.1))
    assert report.passed
    assert [label for label, got, want in count_rows(report) if got != want] == []
    assert render_table(report).row_count == 11

    wrong = DemoReport(config, expected, {**measured, "unloads": 4}, similarity=(0.8, 0.1))
    assert not wrong.counts_agree and not wrong.passed
    unrelated_closer = DemoReport(config, expected, measured, similarity=(0.1, 0.8))
    assert unrelated_closer.counts_agree and not unrelated_closer.passed


def test_sentence_embedding_pools_only_real_tokens() -> None:
    answer = {
        "outputs": [
            {"name": "OUTPUT__1", "shape": [1, 2], "data": [9, 9]},
            {"name": "OUTPUT__0", "shape": [1, 3, 2], "data": [1, 2, 3, 4, 100, 100]},
        ]
    }
    pooled = Encoder.sentence_embedding(json.dumps(answer).encode(), [1, 1, 0])
    np.testing.assert_allclose(pooled, [2.0, 3.0])
    assert cosine(pooled, pooled * 3) == pytest.approx(1.0)


def test_needs_on_one_disk_add_up() -> None:
    needs = demo_needs(200, 80 * MiB, 40, 90 * MiB, Path("/tmp"), Path("/tmp"))
    disks = plan_disk(needs, free=lambda _: 100 * GiB, device=lambda _: "root")
    assert len(disks) == 1
    assert disks[0].needed == 200 * 80 * MiB + 40 * 90 * MiB
    check_disk(disks, copies=200)


def test_needs_on_separate_disks_are_checked_apart() -> None:
    needs = demo_needs(200, 80 * MiB, 40, 90 * MiB, Path("/spill"), Path("/cache"))
    disks = plan_disk(
        needs, free=lambda f: {"/spill": 20 * GiB, "/cache": 2 * GiB}[str(f)], device=str
    )
    assert [disk.needed for disk in disks] == [200 * 80 * MiB, 40 * 90 * MiB]
    with pytest.raises(DemoError, match=r"needs 3\.5 GiB free in /cache .* only 2\.0 GiB"):
        check_disk(disks, copies=200)


def test_short_disk_names_the_need_the_place_and_copies_that_fit() -> None:
    needs = demo_needs(200, 80 * MiB, 40, 90 * MiB, Path("/tmp"), Path("/tmp"))
    disks = plan_disk(needs, free=lambda _: 8 * GiB, device=lambda _: "root")
    with pytest.raises(DemoError) as raised:
        check_disk(disks, copies=200)
    message = str(raised.value)
    assert "\n" not in message
    assert "needs 19.1 GiB free in /tmp" in message
    assert "200 published copies x 80.0 MiB" in message
    assert "40 extracted models x 90.0 MiB in the cache" in message
    assert "only 8.0 GiB is free" in message
    # (8 GiB - 40 x 90 MiB) // 80 MiB
    assert "`mme-local demo --copies 57`" in message
    assert "TMPDIR" in message


def test_short_disk_without_room_for_one_copy_suggests_only_tmpdir() -> None:
    needs = [
        DiskNeed(Path("/tmp"), 5 * GiB, "the cache"),
        *demo_needs(10, 80 * MiB, 0, 0, Path("/tmp"), Path("/tmp")),
    ]
    disks = plan_disk(needs, free=lambda _: 1 * GiB, device=lambda _: "root")
    with pytest.raises(DemoError) as raised:
        check_disk(disks, copies=10)
    assert "--copies" not in str(raised.value)
    assert "set TMPDIR to a folder on a bigger disk" in str(raised.value)


def test_extracted_bytes_counts_file_members(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "1"
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"x" * 3000)
    (tmp_path / "model" / "config.pbtxt").write_text("name: 'm'\n")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "model", arcname="model")
    assert extracted_bytes(archive) == 3000 + len("name: 'm'\n")
