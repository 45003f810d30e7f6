"""The `pytorch` backend as it was before the torch host: torch imported in every model's stub.

Kept only so that bench/torch_host.py can measure the host against it in one run; mme-local
itself never installs it.

A Python-based Triton backend named `pytorch` that serves TorchScript artifacts.

Triton picks it for `platform: "pytorch_libtorch"` when no libtorch backend is installed, so
unmodified SageMaker artifacts run in the embedded Triton on a laptop or in CI. NVIDIA's
container has the real libtorch backend and never reaches this file.

Errors from torch (for example "CUDA out of memory") are left to propagate unchanged so that
Triton's SageMaker front end can map them to 507.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

_INDEXED = re.compile(r"^(?:INPUT|OUTPUT)__(\d+)$")


def _positional_order(names: list[str], forward_args: list[str]) -> list[str]:
    """Order config tensor names the way libtorch's backend binds them to forward()."""
    indexed = [_INDEXED.match(name) for name in names]
    if all(indexed):
        return sorted(names, key=lambda name: int(_INDEXED.match(name).group(1)))  # type: ignore[union-attr]
    if set(names) <= set(forward_args):
        return sorted(names, key=forward_args.index)
    return names


def _forward_argument_names(module: Any) -> list[str]:
    try:
        arguments = module.forward.schema.arguments
    except (AttributeError, RuntimeError):
        return []
    return [argument.name for argument in arguments if argument.name != "self"]


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.pt"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        wants_gpu = args.get("model_instance_kind") == "GPU"
        if wants_gpu and torch.cuda.is_available():
            self.device = torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
        else:
            self.device = torch.device("cpu")
        self.module = torch.jit.load(path, map_location=self.device)  # type: ignore[no-untyped-call]
        self.module.eval()
        forward_args = _forward_argument_names(self.module)
        self.input_names = _positional_order([t["name"] for t in config["input"]], forward_args)
        self.outputs = [
            (t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]
        ]

    def _output_tensors(self, result: Any) -> list[Any]:
        if isinstance(result, torch.Tensor):
            values: list[torch.Tensor] = [result]
        elif isinstance(result, dict):
            values = list(result.values())
        else:
            values = list(result)
        tensors = []
        for position, (name, dtype) in enumerate(self.outputs):
            match = _INDEXED.match(name)
            index = int(match.group(1)) if match else position
            array = values[index].detach().cpu().numpy()
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(array.astype(dtype))))
        return tensors

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                inputs = [
                    torch.from_numpy(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
                    for name in self.input_names
                ]
                with torch.inference_mode():
                    result = self.module(*[tensor.to(self.device) for tensor in inputs])
                outputs = self._output_tensors(result)
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except Exception as error:  # torch's own text goes back to the caller unchanged
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(error))
                    )
                )
        return responses

    def finalize(self) -> None:
        del self.module
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
