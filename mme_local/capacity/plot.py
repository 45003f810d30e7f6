"""The picture of a plan: hit ratio and added p99 per candidate (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

from mme_local.capacity.errors import CapacityError
from mme_local.capacity.plan import Plan


def write_plot(plan: Plan, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CapacityError(
            "--plot needs matplotlib: pip install 'mme-local[plot]' (or pip install matplotlib)"
        ) from None
    labels = [o.candidate.label for o in plan.outcomes]
    # The figures the candidates are judged on (steady state unless --include-warmup).
    windows = [o.result.judged(plan.targets.include_warmup) for o in plan.outcomes]
    hits = [w.hit_ratio for w in windows]
    p99 = [w.wait_p99_s * 1000 for w in windows]
    best = plan.cheapest
    colors = [
        "tab:green" if best is not None and o is best else ("tab:blue" if o.meets else "tab:gray")
        for o in plan.outcomes
    ]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.8 * len(labels)), 6.5))
    top.bar(labels, hits, color=colors)
    top.set_ylabel("predicted hit ratio")
    top.set_ylim(0, 1)
    bottom.bar(labels, p99, color=colors)
    bottom.set_ylabel("added latency p99 (ms)")
    if plan.targets.hit_ratio is not None:
        top.axhline(plan.targets.hit_ratio, color="tab:red", linestyle="--", label="target")
        top.legend(loc="lower right")
    if plan.targets.p99_s is not None:
        bottom.axhline(plan.targets.p99_s * 1000, color="tab:red", linestyle="--", label="target")
        bottom.legend(loc="upper right")
    for axis in (top, bottom):
        axis.tick_params(axis="x", labelrotation=45)
        for tick in axis.get_xticklabels():
            tick.set_horizontalalignment("right")
    title = "mme-local capacity plan"
    if best is not None:
        title += f": cheapest meeting the targets is {best.candidate.label}"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise CapacityError(f"could not write the plot to {path}: {error.strerror}") from None
    finally:
        plt.close(figure)
