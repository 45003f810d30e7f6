"""The endpoint's metrics as CloudWatch JSON lines, so dashboards and alarms built for the
cloud can be tried on local figures, and the figures replayed into CloudWatch.

Every period, one line per metric, each line a complete PutMetricData request holding one
datum: `{"Namespace": ..., "MetricData": [{"MetricName", "Timestamp", "Dimensions", "Unit",
"StatisticValues" | "Value"}]}` (`aws cloudwatch put-metric-data --cli-input-json "$line"`
sends one). Dimensions are EndpointName and VariantName. Each namespace is the one AWS's
"Monitor Amazon SageMaker AI with Amazon CloudWatch" page lists the metric under.

- Per-request metrics go out as a StatisticSet of the period's per-request values, as AWS
  defines them: `Invocations` 1 per request; `InvocationsPerInstance` 1/instances;
  `Invocation4XXErrors`, `Invocation5XXErrors` 1 for such a response, otherwise 0 (one sample
  per invocation), and `InvocationModelErrors` the same way (AWS documents only its Sum);
  `ModelCacheHit` 1 if the model was already loaded,
  otherwise 0 (one sample per invocation that got its model). So Sum counts and Average is the
  rate or hit ratio, as on CloudWatch. Written for periods with samples.
- Times are StatisticSets in microseconds (SampleCount, Sum, Minimum, Maximum), for periods
  with samples.
- Gauges (`LoadedModelCount` and the utilisation in percent) are one `Value`, their last;
  with several instances, one datum per instance under the same dimensions, as each cloud
  instance reports its own (CloudWatch's Average is then per instance, its Sum the
  endpoint's). The instances share this machine: memory, disk and GPU utilisation are the
  machine's, the same in each instance's datum; LoadedModelCount and CPU are the instance's.

CloudWatch refuses a datum carrying both `Value` and `StatisticValues`, so none does.
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
from mme_local.metrics import Metrics, Timing

log = logging.getLogger(__name__)

INVOCATION_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"


@dataclass(frozen=True)
class _Metric:
    family: str
    name: str
    unit: str
    namespace: str = INVOCATION_NAMESPACE


@dataclass(frozen=True)
class _PerRequest:
    """A metric with one 0/1 (or 1) sample per request: `counted` sums the samples and
    `samples` counts them, both Prometheus counters."""

    name: str
    counted: str
    samples: str = "mme_invocations"
    per_instance: bool = False
    """Each sample is 1/instances, not 1 (AWS: "1/numberOfInstances is sent as the value on
    each request")."""


_PER_REQUEST = (
    _PerRequest("Invocations", "mme_invocations"),
    _PerRequest("InvocationsPerInstance", "mme_invocations_per_instance", per_instance=True),
    _PerRequest("Invocation4XXErrors", "mme_invocation_4xx_errors"),
    _PerRequest("Invocation5XXErrors", "mme_invocation_5xx_errors"),
    _PerRequest("InvocationModelErrors", "mme_invocation_model_errors"),
    _PerRequest("ModelCacheHit", "mme_model_cache_hit", samples="mme_model_cache_lookups"),
)
_GAUGES = (
    _Metric("mme_loaded_model_count", "LoadedModelCount", "None", INSTANCE_NAMESPACE),
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


def _timings(metrics: Metrics) -> tuple[tuple[str, Timing], ...]:
    return (
        ("ModelLatency", metrics.model_latency),
        ("OverheadLatency", metrics.overhead_latency),
        ("ModelLoadingWaitTime", metrics.model_loading_wait_time),
        ("ModelDownloadingTime", metrics.model_downloading_time),
        ("ModelLoadingTime", metrics.model_loading_time),
        ("ModelUnloadingTime", metrics.model_unloading_time),
    )


def _values(metrics: Metrics) -> dict[str, float]:
    """This endpoint's samples by sample name (its CloudWatch metrics carry only its labels)."""
    values: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if set(sample.labels) <= {"endpoint_name", "variant_name"}:
                values[sample.name] = sample.value
    return values


def _statistics(count: float, total: float, minimum: float, maximum: float) -> dict[str, float]:
    return {"SampleCount": count, "Sum": total, "Minimum": minimum, "Maximum": maximum}


class CloudWatchLines:
    """Turns successive snapshots of `metrics` into PutMetricData requests (the only reader of
    its timings' periods)."""

    def __init__(self, metrics: Metrics, instances: int = 1) -> None:
        self.metrics = metrics
        self.instances = instances
        self._last = _values(metrics)
        for _, timing in _timings(metrics):
            timing.take_period()  # the first period starts now, as the counters' deltas do

    def records(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """The requests for the period since the previous call."""
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        current = _values(self.metrics)
        previous, self._last = self._last, current

        def delta(family: str) -> float:
            name = f"{family}_total"
            return current.get(name, 0.0) - previous.get(name, 0.0)

        def record(name: str, unit: str, namespace: str, **value: Any) -> dict[str, Any]:
            datum = {
                "MetricName": name,
                "Timestamp": stamp,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": self.metrics.endpoint_name},
                    {"Name": "VariantName", "Value": self.metrics.variant_name},
                ],
                "Unit": unit,
                **value,
            }
            return {"Namespace": namespace, "MetricData": [datum]}

        records: list[dict[str, Any]] = []
        for per_request in _PER_REQUEST:
            samples, counted = delta(per_request.samples), delta(per_request.counted)
            if samples > 0:
                # Each sample is 0 or `one`: the extremes follow from how many were `one`.
                one = 1.0 / self.instances if per_request.per_instance else 1.0
                minimum = one if counted >= samples * one * (1 - 1e-9) else 0.0
                maximum = one if counted > 0 else 0.0
                statistics = _statistics(samples, counted, minimum, maximum)
                records.append(
                    record(
                        per_request.name, "None", INVOCATION_NAMESPACE, StatisticValues=statistics
                    )
                )
        for name, timing in _timings(self.metrics):
            period = timing.take_period()
            if period is not None:
                statistics = _statistics(
                    float(period.count),
                    period.total * 1e6,
                    period.minimum * 1e6,
                    period.maximum * 1e6,
                )
                records.append(
                    record(name, "Microseconds", INVOCATION_NAMESPACE, StatisticValues=statistics)
                )
        if self.instances == 1:
            for metric in _GAUGES:
                if metric.family in current:
                    gauge = current[metric.family]
                    records.append(record(metric.name, metric.unit, metric.namespace, Value=gauge))
            return records
        for instance in range(self.instances):
            loaded, cpu = self.metrics.instance_figures(instance)
            own = {"mme_loaded_model_count": loaded, "mme_cpu_utilization_percent": cpu}
            for metric in _GAUGES:
                value = own[metric.family] if metric.family in own else current.get(metric.family)
                if value is not None:
                    records.append(record(metric.name, metric.unit, metric.namespace, Value=value))
        return records


class CloudWatchFile(BackgroundTask):
    """Appends CloudWatchLines' records to a file every `period_s`, and once more at stop."""

    def __init__(
        self, metrics: Metrics, path: Path, period_s: float = 60.0, instances: int = 1
    ) -> None:
        self.lines = CloudWatchLines(metrics, instances)
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
