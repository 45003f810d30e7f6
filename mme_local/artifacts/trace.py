"""Trace a Hugging Face BERT to TorchScript: (input_ids, attention_mask) -> (hidden, pooled).

Run as `python -m mme_local.artifacts.trace MODEL_FOLDER OUT.pt` to trace in a fresh process:
TorchScript numbers the types it compiles per process (`___torch_mangle_N`), so only a fresh
process writes the same bytes for the same model every time.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch

# torch ships trace() without annotations.
_trace: Any = torch.jit.trace


class TraceError(RuntimeError):
    """The traced module does not reproduce the model's outputs."""


class BertOutputs(torch.nn.Module):
    """Returns a plain (last_hidden_state, pooler_output) tuple.

    A traced BertModel returns a dict; NVIDIA's libtorch backend wants a tuple, one element per
    OUTPUT__N, so the wrapper is what gets traced.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return outputs.last_hidden_state, outputs.pooler_output


def load_bert(folder: Path) -> Any:
    """A BertModel (or any encoder with a pooler) from a local folder, never from a hub."""
    from transformers import AutoModel

    # Eager attention traces to plain matmuls that every libtorch version runs.
    model = AutoModel.from_pretrained(
        str(folder), local_files_only=True, attn_implementation="eager"
    )
    model.eval()
    return model


def _example(vocab_size: int, batch: int, length: int, pad_last: int) -> tuple[torch.Tensor, ...]:
    """INT32 ids and mask, as the Triton config declares them, with padding in the first row."""
    generator = torch.Generator().manual_seed(batch * 1000 + length)
    ids = torch.randint(1, vocab_size, (batch, length), generator=generator, dtype=torch.int32)
    mask = torch.ones(batch, length, dtype=torch.int32)
    ids[0, length - pad_last :] = 0
    mask[0, length - pad_last :] = 0
    return ids, mask


def trace_bert(model: Any) -> torch.jit.ScriptModule:
    """Trace `model` and check the result on another shape and padding than the example's."""
    vocab_size = int(model.config.vocab_size)
    wrapper = BertOutputs(model).eval()
    example = _example(vocab_size, batch=2, length=8, pad_last=3)
    with torch.no_grad():
        traced: torch.jit.ScriptModule = _trace(wrapper, example, strict=False, check_trace=False)
        probe = _example(vocab_size, batch=3, length=5, pad_last=2)
        expected = wrapper(*probe)
        got = traced(*probe)
    for name, want, have in zip(("hidden state", "pooled output"), expected, got, strict=True):
        if want.shape != have.shape or not torch.allclose(want, have, atol=1e-4, rtol=1e-4):
            raise TraceError(f"the traced model's {name} differs from the model's on a new shape")
    return traced


def save_traced(model: Any, out_path: Path) -> None:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Shape-dependent Python branches are what trace_bert checks for itself; TorchScript
        # is deprecated in favour of torch.export, but it is what Triton's libtorch backend loads.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated")
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing")
        torch.jit.save(trace_bert(model), str(out_path))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m mme_local.artifacts.trace MODEL_FOLDER OUT.pt", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    save_traced(load_bert(Path(argv[0])), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
