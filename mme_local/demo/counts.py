"""The emulator's counts, read from its Prometheus samples."""

from __future__ import annotations

from collections.abc import Mapping


def metric(samples: Mapping[str, float], name: str) -> float:
    """Sum of a metric's samples over all label sets."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def measured_counts(samples: Mapping[str, float]) -> dict[str, float]:
    return {
        "requests": metric(samples, "mme_invocations_total"),
        "hits": metric(samples, "mme_model_cache_hit_total"),
        "downloads": metric(samples, "mme_model_downloading_time_seconds_count"),
        "loads": metric(samples, "mme_model_loading_time_seconds_count"),
        "unloads": metric(samples, "mme_model_unloading_time_seconds_count"),
        "loaded": metric(samples, "mme_loaded_model_count"),
        "errors": metric(samples, "mme_invocation_4xx_errors_total")
        + metric(samples, "mme_invocation_5xx_errors_total"),
    }
