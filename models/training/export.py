"""Export the network to ONNX (opset 17, dynamic N/H/W) and check it against torch with onnxruntime."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

INPUT_NAME = "dn"
OUTPUT_NAME = "probabilities"
OPSET = 17


def export_onnx(model: torch.nn.Module, path: str | Path, size: int = 256) -> Path:
    """Write ``model`` (eval mode, BatchNorm folded) to ``path`` and return the path.

    The graph takes raw digital numbers ``dn`` (N, 4, H, W) and returns softmax
    ``probabilities`` (N, 5, H, W); H and W must be multiples of the model's
    size_multiple.
    """
    path = Path(path)
    model = model.eval()
    example = torch.rand(1, 4, size, size) * 4000
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "n", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "n", 2: "height", 3: "width"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def check_against_torch(model: torch.nn.Module, path: str | Path, seed: int = 0) -> float:
    """Max absolute difference of onnxruntime vs torch probabilities on a random input (with a nodata corner)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    dn = (rng.random((2, 4, 192, 256)) * 6000).astype(np.float32)
    dn[:, :, :40, :50] = 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = session.run([OUTPUT_NAME], {INPUT_NAME: dn})[0]
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(dn)).numpy()
    return float(np.abs(ours - reference).max())
