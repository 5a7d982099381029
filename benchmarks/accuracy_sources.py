"""Accuracy numbers for the throughput-vs-accuracy plot.

Two sources, and the report says which one each point uses:

1. **The project's evaluation** (``models/EVALUATION.md`` and the model
   card's ``metrics``, written by ``python -m openeo_cloudmask.models.training.evaluate``):
   :func:`card_metrics` returns the card's metrics as they are, and
   :func:`evaluation_cloud_f1` picks the cloud F1 per method out of them where
   the evaluation reports one.
2. **A quick in-benchmark check** (:func:`weak_label_cloud_f1`): cloud F1 of each
   4-band method on the five Cairo chips with a *weak, unverified* cloud label
   (20 m effective). Cloud = codes 3 and 4 for ours, class 1 of ukis-csmask,
   codes 3 and 4 of the threshold floor. s2cloudless needs 10 bands, which those chips
   lack, so it has no number here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from benchmarks.benchmark_scenes import weak_label_chips
from benchmarks.masking_methods import THREADS, threshold_codes
from openeo_cloudmask.udf import cloud_mask as engine

REPO = Path(__file__).resolve().parent.parent
EVALUATION_MD = REPO / "models" / "EVALUATION.md"


def card_metrics(model) -> dict:
    """The metrics of the model's card as they are on disk *now* (the evaluation may have refreshed the card
    after the model was loaded)."""
    path = Path(model.onnx_path).parent / f"{model.card['id']}.json"
    try:
        return dict(json.loads(path.read_text()).get("metrics") or {})
    except (OSError, json.JSONDecodeError):
        return dict(model.card.get("metrics") or {})


#: Our method rows -> the method names the evaluation script uses in the card's metrics.
EVALUATION_NAMES = {"ours": "ours", "ukis_csmask": "ukis_csmask", "brightness_threshold": "threshold"}


def evaluation_cloud_f1(model, kind: str = "weak_labels") -> dict:
    """{method: cloud F1} from the card's metrics as ``models.training.evaluate`` writes them.

    ``kind="weak_labels"``: pooled cloud F1 (codes 3 + 4) on the five weak-label
    chips (``metrics.weak_labels.pooled.<method>.f1``). ``kind="synthetic"``:
    cloud-or-semi F1 on the held-out synthetic scenes
    (``metrics.synthetic.<method>.cloud_or_semi.f1``). Methods the evaluation
    does not report (s2cloudless) are absent.
    """
    metrics = card_metrics(model)
    out = {}
    for ours_name, their_name in EVALUATION_NAMES.items():
        try:
            if kind == "weak_labels":
                value = metrics["weak_labels"]["pooled"][their_name]["f1"]
            else:
                value = metrics["synthetic"][their_name]["cloud_or_semi"]["f1"]
        except (KeyError, TypeError):
            continue
        if isinstance(value, (int, float)):
            out[ours_name] = float(value)
    return out


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = int((pred & truth).sum())
    denom = int(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else 1.0


def weak_label_cloud_f1(model_id: str, model_dir, include_ukis: bool = True, crop: int = None,
                        limit: int = None) -> dict:
    """Pooled cloud F1 over the weak-label chips for ours, ukis-csmask and the threshold floor.

    ``crop`` keeps only the top-left ``crop`` x ``crop`` pixels of each chip and
    ``limit`` only the first ``limit`` chips (the smoke run).
    """
    chips = weak_label_chips()[:limit]
    if crop:
        chips = [(name, dn[:, :crop, :crop], cloud[:crop, :crop]) for name, dn, cloud in chips]
    if not chips:
        return {}
    model_dir = None if model_dir is None else str(model_dir)
    model = engine.load_model(model_id, model_dir, THREADS)
    options = engine.parse_context({"model": model_id, "model_dir": model_dir})
    preds = {"ours": [], "brightness_threshold": []}
    if include_ukis:
        preds["ukis_csmask"] = []
    truths = []
    for _, dn, cloud in chips:
        truths.append(cloud)
        codes = engine.mask_array(dn[None], options, model, pixel_size_m=10.0)[0, 0]
        preds["ours"].append(np.isin(codes, (3, 4)))
        preds["brightness_threshold"].append(np.isin(threshold_codes(dn), (3, 4)))
        if include_ukis:
            from ukis_csmask.mask import CSmask

            refl = np.moveaxis(dn, 0, -1).astype(np.float32) * np.float32(1e-4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                csm = CSmask(refl, ["blue", "green", "red", "nir"], product_level="l2a",
                             intra_op_num_threads=THREADS, inter_op_num_threads=1,
                             providers=["CPUExecutionProvider"]).csm[..., 0]
            preds["ukis_csmask"].append(csm == 1)
    truth = np.concatenate([t.ravel() for t in truths])
    return {
        name: _f1(np.concatenate([p.ravel() for p in pred]), truth) for name, pred in preds.items()
    } | {"_chips": [name for name, _, _ in chips]}


def evaluation_summary() -> str | None:
    """The first lines of models/EVALUATION.md, if it exists (quoted in the report as the source)."""
    if EVALUATION_MD.is_file():
        return EVALUATION_MD.read_text()
    return None


def card_metrics_json(model) -> str:
    return json.dumps(card_metrics(model), indent=1, sort_keys=True)[:4000]
