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

CLASSES = (
    {"code": 1, "name": "clear", "description": "clear land or water"},
    {"code": 2, "name": "cloud_shadow", "description": "surface darkened by a cloud's shadow"},
    {"code": 3, "name": "semi_transparent_cloud", "description": "thin cloud or haze: the surface shows through"},
    {"code": 4, "name": "cloud", "description": "opaque cloud"},
    {"code": 5, "name": "missing", "description": "no data (DN 0 in all bands)"},
)

#: Sources and licences, from the shared data README; roles follow the split in scenes.py.
DATA_SOURCES = (
    {
        "name": "On Cloud N runtime chips (adwp, adwu, adwz, adxp)",
        "role": "teacher_labels",
        "licence": "CC BY 4.0",
        "attribution": "On Cloud N challenge dataset, Radiant Earth Foundation / DrivenData; contains modified Copernicus Sentinel data 2020",
        "files": ("oncloudn_runtime_adwp.nc", "oncloudn_runtime_adwu.nc", "oncloudn_runtime_adwz.nc", "oncloudn_runtime_adxp.nc"),
    },
    {
        "name": "eo-learn test patch, Slovenia, 5 dates (L1C)",
        "role": "teacher_labels",
        "licence": "MIT",
        "attribution": "sentinel-hub/eo-learn example data; contains modified Copernicus Sentinel data 2015",
        "files": ("eolearn_testpatch_slovenia.nc",),
    },
    {
        "name": "s2cloudmask Wright stack, 29 dates (DEA ARD)",
        "role": "teacher_labels",
        "licence": "Apache-2.0",
        "attribution": "daleroberts/s2cloudmask test data (Digital Earth Australia); contains modified Copernicus Sentinel data",
        "files": ("s2cloudmask_wright_stack30.nc",),
    },
    {
        "name": "s2cloudmask Wright clear scene 2016-01-01, plus clear crops of the teacher scenes and procedural surfaces",
        "role": "synthetic_background",
        "licence": "Apache-2.0",
        "attribution": "daleroberts/s2cloudmask test data; contains modified Copernicus Sentinel data 2016",
        "files": ("s2cloudmask_wright_clear_20160101.nc",),
    },
    {
        "name": "Held-out real scenes: On Cloud N akny, s2cloudless test scene (CC BY-SA 4.0, evaluation only)",
        "role": "evaluation",
        "licence": "CC BY 4.0 / CC BY-SA 4.0",
        "attribution": "Radiant Earth / DrivenData; Sinergise s2cloudless 1.2.1; contains modified Copernicus Sentinel data",
        "files": ("oncloudn_runtime_akny.nc", "s2cloudless_testscene.nc"),
    },
    {
        "name": "Weakly labelled course chips (label_weak: validation only) and spyndex clear scene (synthetic test background)",
        "role": "validation",
        "licence": "unclear (course chips) / MIT (spyndex)",
        "attribution": "ahmedr2001 / AhmedZahran02 AI-Powered-Cloud-Masking; spyndex; contains modified Copernicus Sentinel data",
        "files": (
            "cairo_kaggle_weaklabel_100301.nc",
            "cairo_kaggle_weaklabel_100909.nc",
            "cairo_kaggle_weaklabel_101429.nc",
            "cairo_kaggle_weaklabel_101657.nc",
            "cairo_kaggle_weaklabel_102871.nc",
            "spyndex_s2_10m.nc",
        ),
    },
)


def build_card(config: dict, tiling: dict, normalisation: str, teacher: str, onnx_path: Path = ONNX_PATH) -> dict:
    """The card as a dict, validated, with empty metrics; ``onnx_sha256`` is the hash of ``onnx_path``."""
    kind, hidden = config.get("head", "plain"), config.get("head_hidden", 0)
    head = {
        "plain": "transposed-convolution head",
        "pixel": "full-resolution head that adds each pixel's own bands (a 1x1 convolution) to its "
        + (f"context features, {hidden} hidden channels" if hidden else "context logits"),
        "block": "transposed-convolution head that sees the context and the raw 4x4 block of every cell"
        + (f" through {hidden} hidden units" if hidden else ""),
    }[kind]
    card = {
        "id": MODEL_ID,
        "version": config["version"],
        "description": (
            "Compact U-Net (4x4 stride-4 stem, quarter-resolution encoder-decoder with depthwise-separable "
            f"residual blocks, {head}) that classifies every Sentinel-2 pixel into "
            "KappaMask codes 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud, 5 missing from "
            "B02, B03, B04, B08 at 10 m (trained on 10-30 m, L1C and L2A). Trained on synthetic clouds and "
            "shadows over real clear-sky backgrounds plus ukis-csmask ensemble teacher labels on real scenes."
        ),
        "onnx_file": ONNX_PATH.name,
        "onnx_sha256": sha256_of(onnx_path),
        "licence": "Apache-2.0 (weights). Contains modified Copernicus Sentinel data (2015-2020); training data "
        "attributions and licences are listed under training.data.",
        "processing_levels": ["L1C", "L2A"],
        "resolution_m": 10.0,
        "input": {
            "name": "dn",
            "bands": ["B02", "B03", "B04", "B08"],
            "dtype": "float32",
            "units": "digital_number",
            "scale": 10000.0,
            "offset": 0.0,
            "nodata": 0.0,
            "normalisation": normalisation,
        },
        "output": {"name": "probabilities", "kind": "probabilities", "classes": list(CLASSES), "classes_name": "classes"},
        "tiling": tiling,
        "training": {
            "script": "python -m openeo_cloudmask.models.training.train",
            "seed": config["seed"],
            "data": [dict(source) for source in DATA_SOURCES],
            "teacher": teacher,
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
