"""A tiny, fixed ONNX model and card for plumbing tests.

It is *not* a cloud model: it thresholds mean visible brightness (dark ->
shadow, mid -> semi-transparent, bright -> cloud, else clear) after a 5x5
average, so that tests can predict its answer and windows have a little
spatial context. It follows the same card schema and ONNX contract as the
real model in ``models/`` (input ``dn`` (N, 4, H, W) digital numbers, output
``probabilities`` (N, 5, H, W) for codes 1..5). The demo and the README
always use the real model.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

TINY_MODEL_ID = "tiny-test"
BANDS = ["B02", "B03", "B04", "B08"]


def expected_codes(dn: np.ndarray) -> np.ndarray:
    """What the tiny model answers for a spatially uniform (C, H, W) patch of digital numbers."""
    m = dn[:3].astype(np.float64).mean(axis=0) / 10000.0
    logits = np.stack([0 * m, -40 * m + 2, 30 * m - 6, 60 * m - 18, 0 * m - 50])
    return (logits.argmax(axis=0) + 1).astype(np.uint8)


def build_tiny_model(directory, window: int = 64, overlap: int = 8) -> Path:
    """Write ``tiny-test.onnx`` and ``tiny-test.json`` into ``directory``; return the directory."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weight = np.zeros((5, 4, 1, 1), dtype=np.float32)
    # logit_k = a_k * mean(B02, B03, B04) + c_k, with reflectance = DN / 10000
    slopes = [0.0, -40.0, 30.0, 60.0, 0.0]
    weight[:, :3, 0, 0] = np.asarray(slopes, dtype=np.float32)[:, None] / 3.0
    bias = np.asarray([0.0, 2.0, -6.0, -18.0, -50.0], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["dn", "scale"], ["refl"]),
            helper.make_node("Conv", ["refl", "w", "b"], ["logits"], kernel_shape=[1, 1]),
            helper.make_node(
                "AveragePool", ["logits"], ["smooth"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], count_include_pad=0
            ),
            helper.make_node("Softmax", ["smooth"], ["probabilities"], axis=1),
        ],
        "tiny_cloud_mask",
        [helper.make_tensor_value_info("dn", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5, "H", "W"])],
        [
            numpy_helper.from_array(np.asarray(1e-4, dtype=np.float32), "scale"),
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx_path = directory / f"{TINY_MODEL_ID}.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    card = {
        "id": TINY_MODEL_ID,
        "version": "0.0.1",
        "description": "Brightness-threshold plumbing model for tests. Not a cloud mask.",
        "onnx_file": onnx_path.name,
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "licence": "Apache-2.0",
        "processing_levels": ["L1C", "L2A"],
        "resolution_m": 10.0,
        "input": {
            "name": "dn",
            "bands": BANDS,
            "dtype": "float32",
            "units": "digital_number",
            "scale": 10000.0,
            "offset": 0.0,
            "nodata": 0.0,
            "normalisation": "multiplied by 1e-4 inside the graph",
        },
        "output": {
            "name": "probabilities",
            "kind": "probabilities",
            "classes": [
                {"code": 1, "name": "clear"},
                {"code": 2, "name": "cloud_shadow"},
                {"code": 3, "name": "semi_transparent_cloud"},
                {"code": 4, "name": "cloud"},
                {"code": 5, "name": "missing"},
            ],
        },
        "tiling": {
            "receptive_field_px": 5,
            "size_multiple": 8,
            "min_tile_size": 16,
            "recommended_window": window,
            "recommended_overlap": overlap,
            "recommended_chunk": window - 2 * overlap,
        },
        "training": {
            "script": "tests/tiny_model.py (hand-set weights, no training)",
            "seed": 0,
            "data": [],
            "teacher": "none",
            "opaque_rule": "none (hand-set weights)",
            "human_labels": "none",
            "config": {},
        },
        "metrics": {},
    }
    (directory / f"{TINY_MODEL_ID}.json").write_text(json.dumps(card, indent=2))
    return directory
