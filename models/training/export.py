"""Export the network to ONNX (opset 17, dynamic N/H/W) and check it against torch with onnxruntime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from openeo_cloudmask.models.training.card import CLASSES_NAME, INPUT_NAME, OUTPUT_NAME
from openeo_cloudmask.models.training.fast_head import rewrite

OPSET = 17


class _Outputs(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, dn: torch.Tensor):
        return self.model.outputs(dn)


def export_onnx(model: torch.nn.Module, path: str | Path, size: int = 256) -> Path:
    """Write ``model`` (eval mode, BatchNorm folded) to ``path`` and return the path.

    The graph takes raw digital numbers ``dn`` (N, 4, H, W) and returns softmax
    ``probabilities`` (N, 5, H, W) and ``classes`` (N, 1, H, W) uint8, the index
    of the most probable class. Its head is then rewritten at quarter resolution
    (:mod:`fast_head`: the same answers), with the softmax behind the boolean
    input ``want_probabilities`` (default true; onnxruntime runs every node of a
    graph, whatever outputs a caller asks for). H and W must be multiples of the
    model's size_multiple.
    """
    path = Path(path)
    model = model.eval()
    example = torch.rand(1, 4, size, size) * 4000
    buffer = io.BytesIO()
    axes = {0: "n", 2: "height", 3: "width"}
    with torch.no_grad():
        torch.onnx.export(
            _Outputs(model).eval(),  # eval: the exporter restores the wrapper's mode on the model afterwards
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, CLASSES_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes, CLASSES_NAME: axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    rewrite(path)
    return path


def check_against_torch(model: torch.nn.Module, path: str | Path, seed: int = 0) -> float:
    """Max absolute difference of onnxruntime vs torch probabilities on a random input (with a nodata corner).

    Also checks that the graph's classes output is the argmax of its probabilities.
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    dn = (rng.random((2, 4, 192, 256)) * 6000).astype(np.float32)
    dn[:, :, :40, :50] = 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours, classes = session.run([OUTPUT_NAME, CLASSES_NAME], {INPUT_NAME: dn})
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(dn)).numpy()
    if classes.dtype != np.uint8 or not np.array_equal(classes[:, 0], ours.argmax(axis=1)):
        raise RuntimeError(f"{path}: its classes output is not the argmax of its probabilities")
    return float(np.abs(ours - reference).max())
