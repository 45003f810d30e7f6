"""Reading the gateway's Prometheus text: one parser for tests, the demo and `mme-local stats`."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# CloudWatch's dimensions: the same on every sample of one endpoint, so they name nothing here.
_IDENTITY_LABELS = frozenset({"endpoint_name", "variant_name"})


def _labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in _IDENTITY_LABELS}


def read_samples(text: str) -> dict[str, float]:
    """Samples by name, with sorted `k="v"` labels in braces where there are any.

    The endpoint's own labels (`endpoint_name`, `variant_name`) are left out of the names.
    """
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(_labels(sample.labels).items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@dataclass(frozen=True)
class MetricRow:
    name: str
    kind: str
    """"histogram", or the family's type for one counter or gauge sample."""
    value: float
    """A histogram's count; a counter's or gauge's value."""
    total: float | None = None
    """A histogram's sum."""
    labels: dict[str, str] = field(default_factory=dict)


def read_rows(text: str, prefix: str = "mme_") -> list[MetricRow]:
    """One row per histogram (count and sum) and per counter or gauge sample (no `_created`)."""
    rows: list[MetricRow] = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        if family.type == "histogram":
            values = {s.name: s.value for s in family.samples if not _labels(s.labels)}
            count = values.get(f"{family.name}_count", 0.0)
            total = values.get(f"{family.name}_sum", 0.0)
            rows.append(MetricRow(family.name, "histogram", count, total))
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            rows.append(
                MetricRow(sample.name, family.type, sample.value, None, _labels(sample.labels))
            )
    return rows
