"""CloudWatch-style lines from the metrics, and the utilisation gauges' arithmetic."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mme_local.cloudwatch import CloudWatchFile, CloudWatchLines
from mme_local.metrics import Metrics
from mme_local.metrics_reader import read_samples
from mme_local.runtime.utilisation import CpuMeter, UtilisationSampler, disk_percent, memory_percent

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _by_name(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each line is one PutMetricData request holding one datum: the datum, with Namespace."""
    by_name: dict[str, dict[str, Any]] = {}
    for record in records:
        (datum,) = record["MetricData"]
        by_name[datum["MetricName"]] = {"Namespace": record["Namespace"], **datum}
    return by_name


def _traffic(metrics: Metrics) -> None:
    """Four invocations: one 4xx, three model answers of 2, 4 and 9 ms, two cache hits in
    three lookups, one unload, and every gauge (GPU included) set."""
    metrics.invocations.inc(4)
    metrics.invocations_per_instance.inc(4)
    metrics.invocation_4xx_errors.inc()
    for hit in (True, True, False):
        metrics.count_cache_lookup(hit)
    for seconds in (0.002, 0.004, 0.009):
        metrics.model_latency.observe(seconds)
    metrics.model_unloading_time.observe(2.0)
    metrics.loaded_model_count.set(2)
    metrics.cpu_utilization.set(12.5)
    metrics.memory_utilization.set(40.0)
    metrics.disk_utilization.set(3.0)
    metrics.set_gpu_utilization(150.0, 40.0)


def test_every_line_is_a_put_metric_data_request_botocore_accepts() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    _traffic(metrics)
    records = lines.records(NOW)
    assert len(records) == 14
    client = boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    with Stubber(client) as stubber:
        for record in records:
            line = json.loads(json.dumps(record))  # as read back from the file
            stubber.add_response("put_metric_data", {}, line)
            client.put_metric_data(**line)  # botocore's parameter validation runs here
            (datum,) = line["MetricData"]
            # CloudWatch refuses a datum with both (and the BYOC metrics page says so).
            assert ("Value" in datum) != ("StatisticValues" in datum), datum
        stubber.assert_no_pending_responses()


def test_per_request_metrics_average_to_their_rates() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    _traffic(metrics)
    records = _by_name(lines.records(NOW))
    # AWS: 1 for each 4xx (5xx) response, otherwise 0, so Average is the error rate.
    assert records["Invocation4XXErrors"]["StatisticValues"] == {
        "SampleCount": 4.0,
        "Sum": 1.0,
        "Minimum": 0.0,
        "Maximum": 1.0,
    }
    assert records["Invocation5XXErrors"]["StatisticValues"] == {
        "SampleCount": 4.0,
        "Sum": 0.0,
        "Minimum": 0.0,
        "Maximum": 0.0,
    }
    # ModelCacheHit: its Average is the hit ratio.
    assert records["ModelCacheHit"]["StatisticValues"] == {
        "SampleCount": 3.0,
        "Sum": 2.0,
        "Minimum": 0.0,
        "Maximum": 1.0,
    }
    invocations = records["Invocations"]["StatisticValues"]
    assert invocations == {"SampleCount": 4.0, "Sum": 4.0, "Minimum": 1.0, "Maximum": 1.0}
    assert "Value" not in records["Invocations"]


def test_latency_lines_carry_the_periods_minimum_and_maximum() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    _traffic(metrics)
    latency = _by_name(lines.records(NOW))["ModelLatency"]
    assert latency["Unit"] == "Microseconds"
    assert latency["StatisticValues"] == pytest.approx(
        {"SampleCount": 3.0, "Sum": 15000.0, "Minimum": 2000.0, "Maximum": 9000.0}
    )
    assert "Value" not in latency
    metrics.model_latency.observe(0.001)
    again = _by_name(lines.records(NOW))["ModelLatency"]
    assert again["StatisticValues"] == pytest.approx(
        {"SampleCount": 1.0, "Sum": 1000.0, "Minimum": 1000.0, "Maximum": 1000.0}
    ), "each period has its own extremes"


# "Monitor Amazon SageMaker AI with Amazon CloudWatch": invocation and model-loading metrics in
# AWS/SageMaker; the multi-model instance metrics (LoadedModelCount) and utilisation in
# /aws/sagemaker/Endpoints.
NAMESPACES = {
    "Invocations": "AWS/SageMaker",
    "InvocationsPerInstance": "AWS/SageMaker",
    "Invocation4XXErrors": "AWS/SageMaker",
    "Invocation5XXErrors": "AWS/SageMaker",
    "ModelCacheHit": "AWS/SageMaker",
    "ModelLatency": "AWS/SageMaker",
    "ModelUnloadingTime": "AWS/SageMaker",
    "LoadedModelCount": "/aws/sagemaker/Endpoints",
    "CPUUtilization": "/aws/sagemaker/Endpoints",
    "MemoryUtilization": "/aws/sagemaker/Endpoints",
    "DiskUtilization": "/aws/sagemaker/Endpoints",
    "GPUUtilization": "/aws/sagemaker/Endpoints",
    "GPUMemoryUtilization": "/aws/sagemaker/Endpoints",
}


def test_each_metric_is_in_the_namespace_aws_lists_it_under() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    _traffic(metrics)
    records = _by_name(lines.records(NOW))
    assert {name: records[name]["Namespace"] for name in NAMESPACES} == NAMESPACES
    assert records["LoadedModelCount"]["Value"] == 2


def test_lines_give_each_period_with_cloudwatch_dimensions() -> None:
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics)
    metrics.invocations.inc(3)
    metrics.invocation_5xx_errors.inc()
    metrics.loaded_model_count.set(2)
    records = _by_name(lines.records(NOW))
    assert records["Invocations"]["StatisticValues"]["Sum"] == 3
    assert records["Invocation5XXErrors"]["StatisticValues"]["Sum"] == 1
    assert records["Invocation4XXErrors"]["StatisticValues"]["Sum"] == 0
    assert records["Invocations"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": "shop-mme"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert records["Invocations"]["Timestamp"] == "2026-01-02T03:04:05Z"
    assert "GPUUtilization" not in records
    assert "ModelCacheHit" not in records, "no lookup, no sample"

    metrics.invocations.inc()
    again = _by_name(lines.records(NOW))
    assert again["Invocations"]["StatisticValues"]["Sum"] == 1, "each period counts its own"
    assert "ModelLatency" not in again, "no latency line for a period without samples"


def test_file_appends_one_json_object_per_line(tmp_path: Path) -> None:
    metrics = Metrics()
    writer = CloudWatchFile(metrics, tmp_path / "cw.jsonl")
    metrics.invocations.inc()
    written = writer.flush()
    rows = [json.loads(line) for line in (tmp_path / "cw.jsonl").read_text().splitlines()]
    assert len(rows) == written
    assert set(rows[0]) == {"Namespace", "MetricData"}
    assert {"Timestamp", "MetricName", "Dimensions", "Unit"} <= set(rows[0]["MetricData"][0])


def test_utilisation_gauges_from_this_process(tmp_path: Path) -> None:
    metrics = Metrics()
    sampler = UtilisationSampler(
        metrics, lambda: [[os.getpid()]], tmp_path, gpus=lambda: (150.0, 40.0)
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


def _two_instances(metrics: Metrics) -> None:
    """Instance 0 holds 2 models and uses 50% CPU, instance 1 holds 1 and uses 20%; four
    invocations over the two."""
    for instance, loaded, cpu in ((0, 2, 50.0), (1, 1, 20.0)):
        metrics.set_cache_gauges(instance, loaded, 0, 0, 0, 0, None)
        metrics.set_instance_cpu(instance, cpu)
    metrics.cpu_utilization.set(70.0)
    metrics.memory_utilization.set(40.0)
    metrics.disk_utilization.set(3.0)
    metrics.invocations.inc(4)
    metrics.invocations_per_instance.inc(4 * 0.5)


def test_each_instance_sends_its_own_instance_metrics() -> None:
    """Each cloud instance reports its own LoadedModelCount and utilisation under the same
    dimensions, so CloudWatch's Average is per instance and its Sum the endpoint's."""
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics, instances=2)
    _two_instances(metrics)
    records = lines.records(NOW)
    values: dict[str, list[float]] = {}
    for record in records:
        (datum,) = record["MetricData"]
        if record["Namespace"] == "/aws/sagemaker/Endpoints":
            values.setdefault(datum["MetricName"], []).append(datum["Value"])
    assert values == {
        "LoadedModelCount": [2, 1],
        "CPUUtilization": [50.0, 20.0],
        # the instances share this machine: its memory and disk are each one's
        "MemoryUtilization": [40.0, 40.0],
        "DiskUtilization": [3.0, 3.0],
    }
    # AWS: "1/numberOfInstances is sent as the value on each request".
    per_instance = _by_name([r for r in records if r["Namespace"] == "AWS/SageMaker"])
    assert per_instance["InvocationsPerInstance"]["StatisticValues"] == {
        "SampleCount": 4.0,
        "Sum": 2.0,
        "Minimum": 0.5,
        "Maximum": 0.5,
    }


def test_the_sampler_measures_each_instances_cpu_apart(tmp_path: Path) -> None:
    metrics = Metrics()
    sampler = UtilisationSampler(metrics, lambda: [[os.getpid()], []], tmp_path, gpus=lambda: None)
    sampler.sample()
    spent = time.process_time()
    while time.process_time() - spent < 0.05:  # some CPU (5 clock ticks) for instance 0's
        pass
    result = sampler.sample()
    samples = read_samples(metrics.render().decode())
    first = samples['mme_instance_cpu_utilization_percent{instance="0"}']
    assert first > 0.0
    assert samples['mme_instance_cpu_utilization_percent{instance="1"}'] == 0.0
    assert result.cpu_percent == first, "the endpoint's is the sum over instances"


def test_a_third_per_request_sums_to_whole_samples_despite_rounding() -> None:
    """Seven requests over three instances: 1/3 seven times sums a hair under 7/3."""
    metrics = Metrics("shop-mme", "AllTraffic")
    lines = CloudWatchLines(metrics, instances=3)
    for _ in range(7):
        metrics.invocations.inc()
        metrics.invocations_per_instance.inc(1 / 3)
    statistics = _by_name(lines.records(NOW))["InvocationsPerInstance"]["StatisticValues"]
    assert statistics["Minimum"] == statistics["Maximum"] == 1 / 3
    assert statistics["Sum"] == pytest.approx(7 / 3)
