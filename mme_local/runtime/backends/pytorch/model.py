"""A Python-based Triton backend named `pytorch` that serves TorchScript artifacts.

Triton picks it for `platform: "pytorch_libtorch"` when no libtorch backend is installed, so
unmodified SageMaker artifacts run in the embedded Triton on a laptop or in CI. NVIDIA's
container has the real libtorch backend and never reaches this file.

This stub does not import torch: the module lives in mme-local's torch host, one process per
Triton shared by every TorchScript model (as libtorch shares Triton's process in the cloud).
The stub holds one connection to it for as long as the model is loaded; tensors go through
shared memory (see `torch_host_wire.py`, copied beside this file).

Errors from torch (for example "CUDA out of memory") are passed on unchanged so that Triton's
SageMaker front end can map them to 507.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torch_host_wire import HostConnection


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.pt"
        wants_gpu = args.get("model_instance_kind") == "GPU"
        request = {
            "model": args["model_name"],
            "path": os.path.join(args["model_repository"], args["model_version"], filename),
            "gpu": int(args.get("model_instance_device_id", 0)) if wants_gpu else None,
            "inputs": [t["name"] for t in config["input"]],
            "outputs": [
                [t["name"], np.dtype(pb_utils.triton_string_to_numpy(t["data_type"])).str]
                for t in config["output"]
            ],
        }
        self.host = HostConnection.open()
        try:
            self.input_names: list[str] = self.host.load(request)["inputs"]
        except BaseException:
            self.host.close()
            raise
        self.output_names = [name for name, _ in request["outputs"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                arrays = [
                    pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.input_names
                ]
                outputs = self.host.infer(arrays)
                named = zip(self.output_names, outputs, strict=True)
                tensors = [pb_utils.Tensor(name, array) for name, array in named]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as error:  # the host's (torch's) text goes back unchanged
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(error))
                    )
                )
        return responses

    def finalize(self) -> None:
        self.host.close()
