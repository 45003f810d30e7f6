"""TorchServe handler for a BERT traced to TorchScript: (input_ids, attention_mask) -> (last
hidden state, pooled output).

It takes and gives the same JSON as the Triton templates (KServe v2: named, shaped, flat
tensors), so one client serves both stacks: `INPUT__0` (input_ids) and `INPUT__1`
(attention_mask) in, `OUTPUT__0` (last hidden state) and `OUTPUT__1` (pooled) out.
"""

import json
import os

import torch


def _tensor(spec):
    return torch.tensor(spec["data"], dtype=torch.int64).reshape(spec["shape"])


def _output(name, value):
    return {
        "name": name,
        "shape": list(value.shape),
        "datatype": "FP32",
        "data": value.reshape(-1).tolist(),
    }


class BertHandler:
    def __init__(self):
        self.model = None
        self.device = torch.device("cpu")
        self.initialized = False

    def initialize(self, context):
        properties = context.system_properties
        gpu = properties.get("gpu_id")
        if torch.cuda.is_available() and gpu is not None:
            self.device = torch.device(f"cuda:{gpu}")
        serialized = context.manifest["model"]["serializedFile"]
        path = os.path.join(properties["model_dir"], serialized)
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.initialized = True

    def _answer(self, body):
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        inputs = {spec["name"]: spec for spec in body["inputs"]}
        ids = _tensor(inputs["INPUT__0"]).to(self.device, torch.int32)
        mask = _tensor(inputs["INPUT__1"]).to(self.device, torch.int32)
        with torch.inference_mode():
            hidden, pooled = self.model(ids, mask)
        outputs = [_output("OUTPUT__0", hidden.cpu()), _output("OUTPUT__1", pooled.cpu())]
        return json.dumps({"outputs": outputs})

    def handle(self, data, context):
        answers = []
        for index, row in enumerate(data):
            answers.append(self._answer(row.get("body") or row.get("data")))
            context.set_response_content_type(index, "application/json")
        return answers
