"""The endpoint's metrics as CloudWatch-style JSON lines, so dashboards and alarms built for
the cloud can be tried on local figures.

Every period one line per metric: `Timestamp`, `Namespace`, `MetricName`, `Dimensions`
(PutMetricData's `[{"Name", "Value"}]`: EndpointName, VariantName), `Unit` and `Value`.
Counters give their increase over the period (CloudWatch's Sum), latencies the period's
average in microseconds with `StatisticValues` (SampleCount, Sum), gauges their last value.
Invocation counters are written for periods with traffic, latencies for periods with samples.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mme_local.background_task import BackgroundTask
from mme_local.metrics import Metrics

log = logging.getLogger(__name__)

INVOCATION_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"


@dataclass(frozen=True)
class _Metric:
    family: str
    name: str
    unit: str
    namespace: str = INVOCATION_NAMESPACE


_COUNTERS = (
    _Metric("mme_invocations", "Invocations", "None"),
    _Metric("mme_invocations_per_instance", "InvocationsPerInstance", "None"),
    _Metric("mme_invocation_4xx_errors", "Invocation4XXErrors", "None"),
    _Metric("mme_invocation_5xx_errors", "Invocation5XXErrors", "None"),
    _Metric("mme_invocation_model_errors", "InvocationModelErrors", "None"),
    _Metric("mme_model_cache_hit", "ModelCacheHit", "None"),
)
_LATENCIES = (
    _Metric("mme_model_latency_seconds", "ModelLatency", "Microseconds"),
    _Metric("mme_overhead_latency_seconds", "OverheadLatency", "Microseconds"),
    _Metric("mme_model_loading_wait_time_seconds", "ModelLoadingWaitTime", "Microseconds"),
    _Metric("mme_model_downloading_time_seconds", "ModelDownloadingTime", "Microseconds"),
    _Metric("mme_model_loading_time_seconds", "ModelLoadingTime", "Microseconds"),
    _Metric("mme_model_unloading_time_seconds", "ModelUnloadingTime", "Microseconds"),
)
_GAUGES = (
    _Metric("mme_loaded_model_count", "LoadedModelCount", "None"),
    _Metric("mme_cpu_utilization_percent", "CPUUtilization", "Percent", INSTANCE_NAMESPACE),
    _Metric("mme_memory_utilization_percent", "MemoryUtilization", "Percent", INSTANCE_NAMESPACE),
    _Metric("mme_disk_utilization_percent", "DiskUtilization", "Percent", INSTANCE_NAMESPACE),
    _Metric("mme_gpu_utilization_percent", "GPUUtilization", "Percent", INSTANCE_NAMESPACE),
    _Metric(
        "mme_gpu_memory_utilization_percent",
        "GPUMemoryUtilization",
        "Percent",
        INSTANCE_NAMESPACE,
    ),
)


def _values(metrics: Metrics) -> dict[str, float]:
    """This endpoint's samples by sample name (its CloudWatch metrics carry only its labels)."""
    values: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if set(sample.labels) <= {"endpoint_name", "variant_name"}:
                values[sample.name] = sample.value
    return values


class CloudWatchLines:
    """Turns successive snapshots of `metrics` into CloudWatch-style records."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._last = _values(metrics)

    def records(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The records for the period since the previous call."""
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        current = _values(self.metrics)
        previous, self._last = self._last, current

        def delta(name: str) -> float:
            return current.get(name, 0.0) - previous.get(name, 0.0)

        def record(metric: _Metric, value: float, **extra: Any) -> dict[str, Any]:
            return {
                "Timestamp": stamp,
                "Namespace": metric.namespace,
                "MetricName": metric.name,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": self.metrics.endpoint_name},
                    {"Name": "VariantName", "Value": self.metrics.variant_name},
                ],
                "Unit": metric.unit,
                "Value": value,
                **extra,
            }

        records: list[dict[str, Any]] = []
        if delta("mme_invocations_total") > 0:
            records.extend(record(m, delta(f"{m.family}_total")) for m in _COUNTERS)
        for metric in _LATENCIES:
            count = delta(f"{metric.family}_count")
            if count > 0:
                total_us = delta(f"{metric.family}_sum") * 1e6
                statistics = {"SampleCount": count, "Sum": total_us}
                records.append(record(metric, total_us / count, StatisticValues=statistics))
        for metric in _GAUGES:
            if metric.family in current:
                records.append(record(metric, current[metric.family]))
        return records


class CloudWatchFile(BackgroundTask):
    """Appends CloudWatchLines' records to a file every `period_s`, and once more at stop."""

    def __init__(self, metrics: Metrics, path: Path, period_s: float = 60.0) -> None:
        self.lines = CloudWatchLines(metrics)
        self.path = path
        self.period_s = period_s

    def flush(self) -> int:
        """Write the records of the period that just ended (blocking); returns how many."""
        records = self.lines.records()
        if records:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        return len(records)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().start()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await asyncio.to_thread(self.flush)
            except OSError:
                log.exception("writing CloudWatch lines to %s failed", self.path)

    async def stop(self) -> None:
        """Stop, then write what the last, unfinished period counted."""
        running = self._task is not None
        await super().stop()
        if running:
            await asyncio.to_thread(self.flush)
