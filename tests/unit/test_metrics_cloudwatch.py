"""CloudWatch-style lines from the metrics, and the utilisation gauges' arithmetic."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from mme_local.cloudwatch import CloudWatchFile, CloudWatchLines
from mme_local.metrics import Metrics
from mme_local.runtime.utilisation import CpuMeter, UtilisationSampler, disk_percent, memory_percent

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _by_name(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["MetricName"]): r for r in records}


def test_lines_give_each_periods_sums_and_averages_with_cloudwatch_dimensions() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    metrics.invocations.inc(3)
    metrics.invocation_5xx_errors.inc()
    metrics.model_latency.observe(0.002)
    metrics.model_latency.observe(0.004)
    metrics.loaded_model_count.set(2)
    records = _by_name(lines.records(NOW))
    assert records["Invocations"]["Value"] == 3
    assert records["Invocation5XXErrors"]["Value"] == 1
    assert records["Invocation4XXErrors"]["Value"] == 0
    latency = records["ModelLatency"]
    assert latency["Unit"] == "Microseconds"
    assert latency["Value"] == 3000.0
    assert latency["StatisticValues"] == {"SampleCount": 2.0, "Sum": 6000.0}
    assert latency["Dimensions"] == [
        {"Name": "EndpointName", "Value": "shop-mme"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert latency["Timestamp"] == "2026-01-02T03:04:05Z"
    assert records["LoadedModelCount"]["Value"] == 2
    assert records["CPUUtilization"]["Namespace"] == "/aws/sagemaker/Endpoints"
    assert "GPUUtilization" not in records

    metrics.invocations.inc()
    again = _by_name(lines.records(NOW))
    assert again["Invocations"]["Value"] == 1, "each period counts only its own invocations"
    assert "ModelLatency" not in again, "no latency line for a period without samples"


def test_file_appends_one_json_object_per_line(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = CloudWatchFile(metrics, tmp_path / "cw.jsonl")
    metrics.invocations.inc()
    written = writer.flush()
    rows = [json.loads(line) for line in (tmp_path / "cw.jsonl").read_text().splitlines()]
    assert len(rows) == written
    assert {"Timestamp", "Namespace", "MetricName", "Dimensions", "Unit", "Value"} <= set(rows[0])


def test_utilisation_gauges_from_this_process(tmp_path: Path) -> None:
    metrics = Metrics()
    sampler = UtilisationSampler(
        metrics, lambda: [os.getpid()], tmp_path, gpus=lambda: (150.0, 40.0)
    )
    sampler.sample()
    result = sampler.sample()
    assert result.cpu_percent >= 0.0
    assert 0.0 < result.memory_percent < 100.0
    assert 0.0 < result.disk_percent <= 100.0
    text = metrics.render().decode()
    assert (
        'mme_gpu_utilization_percent{endpoint_name="local-mme",variant_name="AllTraffic"} 150.0'
        in (text)
    )


def test_cpu_meter_counts_only_processes_seen_before() -> None:
    meter = CpuMeter()
    meter.measure([])
    assert meter.measure([os.getpid()]) == 0.0, "a new process only sets its baseline"


def test_memory_and_disk_arithmetic(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n")
    assert memory_percent(meminfo) == 75.0
    assert 0.0 < disk_percent(tmp_path) <= 100.0
