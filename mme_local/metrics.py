"""Prometheus metrics named after the CloudWatch metrics a SageMaker MME emits.

CloudWatch reports microseconds; Prometheus convention is seconds, so the names end in
`_seconds`. The CloudWatch metrics carry CloudWatch's dimensions as the labels `endpoint_name`
and `variant_name`. Each emulator owns its own registry, so tests can run several side by side.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# From 0.1 ms (warm overhead) to minutes (cold loads of big models).
_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 360.0,
)  # fmt: skip

ENDPOINT_LABELS = ("endpoint_name", "variant_name")
"""CloudWatch's EndpointName and VariantName dimensions, as Prometheus labels."""


OTHER_MODELS = "other"


@dataclass(frozen=True)
class PeriodStatistics:
    """One period's samples as PutMetricData's StatisticSet wants them."""

    count: int
    total: float
    minimum: float
    maximum: float


class Timing:
    """A latency histogram that also keeps the count, sum, minimum and maximum of the samples
    since the last `take_period()`: Prometheus histograms have no extremes, and CloudWatch's
    StatisticSet requires them."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._lock = threading.Lock()  # observed on the event loop, taken from a worker thread
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._total = 0.0
        self._minimum = math.inf
        self._maximum = -math.inf

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)
        with self._lock:
            self._count += 1
            self._total += seconds
            self._minimum = min(self._minimum, seconds)
            self._maximum = max(self._maximum, seconds)

    def take_period(self) -> PeriodStatistics | None:
        """The samples since the previous call (None if there were none); one reader only."""
        with self._lock:
            if self._count == 0:
                return None
            taken = PeriodStatistics(self._count, self._total, self._minimum, self._maximum)
            self._reset()
            return taken


class Metrics:
    def __init__(
        self,
        endpoint_name: str = "local-mme",
        variant_name: str = "AllTraffic",
        max_model_labels: int = 1000,
    ) -> None:
        self.max_model_labels = max_model_labels
        """Distinct `target_model` labels kept; invocations of any further model count as
        `other`, so a client looping over random names cannot grow the label set."""
        self._labelled_models: set[str] = set()
        self.registry = CollectorRegistry()
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        r = self.registry
        ids = (endpoint_name, variant_name)

        def histogram(name: str, doc: str) -> Timing:
            family = Histogram(name, doc, ENDPOINT_LABELS, registry=r, buckets=_BUCKETS)
            return Timing(family.labels(*ids))

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, ENDPOINT_LABELS, registry=r).labels(*ids)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ENDPOINT_LABELS, registry=r).labels(*ids)

        self.model_loading_wait_time = histogram(
            "mme_model_loading_wait_time_seconds",
            "ModelLoadingWaitTime: how long an invocation waited for download and/or load.",
        )
        self.model_downloading_time = histogram(
            "mme_model_downloading_time_seconds",
            "ModelDownloadingTime: S3 download and extraction of one artifact.",
        )
        self.model_loading_time = histogram(
            "mme_model_loading_time_seconds", "ModelLoadingTime: the container's load call."
        )
        self.model_unloading_time = histogram(
            "mme_model_unloading_time_seconds", "ModelUnloadingTime: the container's unload call."
        )
        self.model_latency = histogram(
            "mme_model_latency_seconds", "ModelLatency: time the container took to answer."
        )
        self.overhead_latency = histogram(
            "mme_overhead_latency_seconds",
            "OverheadLatency: total time minus ModelLatency (waits for loads included).",
        )
        # Triton's SageMaker front end runs loads and unloads inside an HTTP worker, and
        # invocations on that worker wait (README, "Fidelity notes"): these show how often.
        self.invocations_during_transitions = counter(
            "mme_invocations_during_load_or_unload",
            "Invocations answered by the container whose call overlapped a load or unload call "
            "(any model's) in flight at the container: in flight when sent, when answered, or "
            "sent in between. Such an invocation may have waited for it.",
        )
        self.model_latency_during_transitions = histogram(
            "mme_model_latency_during_load_or_unload_seconds",
            "ModelLatency of the invocations counted in mme_invocations_during_load_or_unload.",
        )
        # Triton 25.11+'s model-list mutex, when the gateway plays it (README, "Fidelity notes").
        self.invocations_held_by_unload = counter(
            "mme_invocations_held_by_unload",
            "Invocations that waited for a model unload to end before reaching their model "
            "(the emulated model-list mutex of Triton 25.11 and later; timed-out waits too).",
        )
        self.invocation_unload_hold_time = histogram(
            "mme_invocation_unload_hold_seconds",
            "How long each invocation in mme_invocations_held_by_unload waited (part of its "
            "ModelLatency, as the container's wait would be).",
        )
        self.invocations = counter("mme_invocations", "Invocations: requests sent to the endpoint.")
        self.invocations_per_instance = counter(
            "mme_invocations_per_instance",
            "InvocationsPerInstance: invocations divided by the instance count.",
        )
        self.model_cache_hit = counter(
            "mme_model_cache_hit", "ModelCacheHit: invocations whose model was already loaded."
        )
        self.model_cache_lookups = counter(
            "mme_model_cache_lookups",
            "Invocations that got their model, loaded or not: ModelCacheHit's sample count "
            "(hit ratio = mme_model_cache_hit_total / this).",
        )
        self.invocation_4xx_errors = counter(
            "mme_invocation_4xx_errors",
            "Invocation4XXErrors: the model answered 4xx, or the gateway refused the request.",
        )
        self.invocation_5xx_errors = counter(
            "mme_invocation_5xx_errors",
            "Invocation5XXErrors: the model answered 5xx or timed out, or the platform failed.",
        )
        self.invocation_model_errors = counter(
            "mme_invocation_model_errors", "InvocationModelErrors: the model answered non-2xx."
        )
        self.loaded_model_count = gauge(
            "mme_loaded_model_count", "LoadedModelCount: models loaded in the container."
        )
        # Instance utilisation, in percent as CloudWatch defines it (sums over cores and GPUs).
        self.cpu_utilization = gauge(
            "mme_cpu_utilization_percent",
            "CPUUtilization: the model server's processes, summed over cores (0-100 x cores).",
        )
        self.memory_utilization = gauge(
            "mme_memory_utilization_percent", "MemoryUtilization: host memory in use."
        )
        self.disk_utilization = gauge(
            "mme_disk_utilization_percent", "DiskUtilization: the cache's file system in use."
        )
        # GPU gauges get their sample only when a GPU was measured, so GPU-less hosts show none.
        self.gpu_utilization_family = Gauge(
            "mme_gpu_utilization_percent",
            "GPUUtilization: summed over GPUs (0-100 x GPUs).",
            ENDPOINT_LABELS,
            registry=r,
        )
        self.gpu_memory_utilization_family = Gauge(
            "mme_gpu_memory_utilization_percent",
            "GPUMemoryUtilization: summed over GPUs (0-100 x GPUs).",
            ENDPOINT_LABELS,
            registry=r,
        )

        self.model_invocations = Counter(
            "mme_model_invocations",
            "Invocations per TargetModel (CloudWatch has no per-model metrics; this is extra).",
            ["target_model"],
            registry=r,
        )
        self.evictions = Counter(
            "mme_model_evictions",
            "Models unloaded to make room, by the budget that was short.",
            ["reason"],
            registry=r,
        )
        self.runtime_restarts = Counter(
            "mme_runtime_restarts", "Times the model server was restarted after dying.", registry=r
        )
        self.host_memory_bytes = Gauge(
            "mme_host_memory_bytes", "Measured resident memory of the model server.", registry=r
        )
        self.disk_bytes = Gauge(
            "mme_disk_bytes", "Bytes of extracted artifacts in the cache folder.", registry=r
        )

        # The cache's own workings (extras CloudWatch lacks).
        self.downloads_waiting = Gauge(
            "mme_model_downloads_waiting",
            "Downloads queued for a download slot (parallel downloads are bounded).",
            registry=r,
        )
        self.loads_waiting = Gauge(
            "mme_model_loads_waiting",
            "Loads queued for a load slot (parallel loads are bounded).",
            registry=r,
        )
        self.artifact_changes = Counter(
            "mme_model_artifact_changes",
            "Objects changed in S3 under a TargetModel this instance already holds (it keeps "
            "serving the bytes it downloaded, as SageMaker does).",
            registry=r,
        )
        self.event_loop_lag = Gauge(
            "mme_event_loop_lag_seconds",
            "How late the gateway's event loop ran a timer, last measurement.",
            registry=r,
        )
        self.event_loop_lag_max = Gauge(
            "mme_event_loop_lag_max_seconds",
            "The largest event-loop lag measured since start.",
            registry=r,
        )

        # Per instance (`up --instance-count N`): which instance holds and does what. The
        # CloudWatch-named series above stay per endpoint and variant, as AWS reports them.
        self._instance_loaded_models = Gauge(
            "mme_instance_loaded_model_count",
            "Models loaded in one instance's model server.",
            ["instance"],
            registry=r,
        )
        self._instance_memory = Gauge(
            "mme_instance_memory_bytes",
            "Memory one instance's cache counts against its budget (the model server's base "
            "plus each loaded model's measured footprint), host or gpu.",
            ["instance", "memory"],
            registry=r,
        )
        self._instance_loads = Counter(
            "mme_instance_model_loads", "Models loaded by one instance.", ["instance"], registry=r
        )
        self._instance_unloads = Counter(
            "mme_instance_model_unloads",
            "Models unloaded by one instance.",
            ["instance"],
            registry=r,
        )
        self._instance_hits = Counter(
            "mme_instance_model_cache_hit",
            "Invocations routed to one instance whose model was already loaded there.",
            ["instance"],
            registry=r,
        )
        self._instance_lookups = Counter(
            "mme_instance_model_cache_lookups",
            "Invocations routed to one instance that got their model there, loaded or not.",
            ["instance"],
            registry=r,
        )
        self._instance_cpu = Gauge(
            "mme_instance_cpu_utilization_percent",
            "CPUUtilization of one instance's model server, summed over cores.",
            ["instance"],
            registry=r,
        )
        self._instance_gauges: dict[int, tuple[int, int, int, int]] = {}
        self._instance_host_memory: dict[int, int] = {}

    def count_unload_hold(self, seconds: float) -> None:
        """An invocation waited `seconds` for unloads (the emulated model-list mutex)."""
        self.invocations_held_by_unload.inc()
        self.invocation_unload_hold_time.observe(seconds)

    def held_by_unload_count(self) -> int:
        """mme_invocations_held_by_unload_total now."""
        labels = {"endpoint_name": self.endpoint_name, "variant_name": self.variant_name}
        value = self.registry.get_sample_value("mme_invocations_held_by_unload_total", labels)
        return int(value or 0)

    def count_cache_lookup(self, hit: bool, instance: int = 0) -> None:
        """ModelCacheHit's per-request sample: 1 if the model was already loaded, else 0."""
        self.model_cache_lookups.inc()
        self._instance_lookups.labels(str(instance)).inc()
        if hit:
            self.model_cache_hit.inc()
            self._instance_hits.labels(str(instance)).inc()

    def count_load(self, instance: int) -> None:
        self._instance_loads.labels(str(instance)).inc()

    def count_unload(self, instance: int) -> None:
        self._instance_unloads.labels(str(instance)).inc()

    def set_cache_gauges(
        self,
        instance: int,
        loaded: int,
        disk_bytes: int,
        downloads_waiting: int,
        loads_waiting: int,
        host_bytes: int,
        gpu_bytes: int | None,
    ) -> None:
        """One instance's cache figures; the endpoint's gauges are the sums over instances
        (LoadedModelCount counts the models loaded in all of them, as CloudWatch's does)."""
        label = str(instance)
        self._instance_loaded_models.labels(label).set(loaded)
        self._instance_memory.labels(label, "host").set(host_bytes)
        if gpu_bytes is not None:
            self._instance_memory.labels(label, "gpu").set(gpu_bytes)
        self._instance_gauges[instance] = (loaded, disk_bytes, downloads_waiting, loads_waiting)
        totals = [sum(column) for column in zip(*self._instance_gauges.values(), strict=True)]
        self.loaded_model_count.set(totals[0])
        self.disk_bytes.set(totals[1])
        self.downloads_waiting.set(totals[2])
        self.loads_waiting.set(totals[3])

    def set_instance_cpu(self, instance: int, percent: float) -> None:
        self._instance_cpu.labels(str(instance)).set(percent)

    def instance_figures(self, instance: int) -> tuple[float, float | None]:
        """One instance's (LoadedModelCount, CPUUtilization); the CPU is None until
        measured."""
        label = {"instance": str(instance)}
        read = self.registry.get_sample_value
        loaded = read("mme_instance_loaded_model_count", label) or 0.0
        return loaded, read("mme_instance_cpu_utilization_percent", label)

    def set_host_memory(self, instance: int, measured: int) -> None:
        """One model server's measured resident memory; `mme_host_memory_bytes` sums them."""
        self._instance_host_memory[instance] = measured
        self.host_memory_bytes.set(sum(self._instance_host_memory.values()))

    def count_model_invocation(self, target_model: str) -> None:
        """mme_model_invocations_total for this TargetModel, within the label bound."""
        if target_model not in self._labelled_models:
            if len(self._labelled_models) >= self.max_model_labels:
                target_model = OTHER_MODELS
            else:
                self._labelled_models.add(target_model)
        self.model_invocations.labels(target_model=target_model).inc()

    def set_gpu_utilization(self, utilization: float, memory_utilization: float) -> None:
        ids = (self.endpoint_name, self.variant_name)
        self.gpu_utilization_family.labels(*ids).set(utilization)
        self.gpu_memory_utilization_family.labels(*ids).set(memory_utilization)

    def render(self) -> bytes:
        return generate_latest(self.registry)
