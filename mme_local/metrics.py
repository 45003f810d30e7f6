"""Prometheus metrics named after the CloudWatch metrics a SageMaker MME emits.

CloudWatch reports microseconds; Prometheus convention is seconds, so the names end in
`_seconds`. Each emulator owns its own registry, so tests can run several side by side.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# From 0.1 ms (warm overhead) to minutes (cold loads of big models).
_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 360.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, registry=r, buckets=_BUCKETS)

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
            "OverheadLatency: time the emulator added, waits for loads excluded.",
        )
        self.invocations = Counter(
            "mme_invocations", "Invocations: requests sent to the endpoint.", registry=r
        )
        self.model_cache_hit = Counter(
            "mme_model_cache_hit",
            "ModelCacheHit: invocations whose model was already loaded.",
            registry=r,
        )
        self.invocation_4xx_errors = Counter(
            "mme_invocation_4xx_errors", "Invocation4XXErrors.", registry=r
        )
        self.invocation_5xx_errors = Counter(
            "mme_invocation_5xx_errors", "Invocation5XXErrors.", registry=r
        )
        self.invocation_model_errors = Counter(
            "mme_invocation_model_errors",
            "InvocationModelErrors: the model answered non-2xx.",
            registry=r,
        )
        self.loaded_model_count = Gauge(
            "mme_loaded_model_count",
            "LoadedModelCount: models loaded in the container.",
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
