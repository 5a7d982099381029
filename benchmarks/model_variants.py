"""Cheaper variants of our model: int8 (dynamic and static QDQ) and fp16, with speed and agreement.

Each variant is written to a scratch directory with a copy of the fp32 card
(new ``onnx_file`` and sha256), so the engine loads it like any model. The
variants never enter ``models/``; adopting one is the lead's decision.

- ``int8_dynamic``: ``quantize_dynamic`` (weights int8, activations quantised
  on the fly; convolutions become ``ConvInteger``).
- ``int8_static_qdq``: ``quantize_static``, QDQ format, per-channel int8
  weights, uint8 activations, only ``Conv`` nodes quantised (the in-graph
  normalisation, ``log1p`` of DN, stays float), calibrated on real chips
  (the calibration chips are listed in the results).
- ``fp16``: weights and activations in float16, float32 inputs and outputs
  kept (``onnxruntime.transformers.float16``).

Accuracy: the variant's class map is compared with the fp32 model's, through
the engine, on held-out real chips (pixel agreement, and cloud F1 of the
variant taking the fp32 cloud mask as reference).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from openeo_cloudmask.udf import cloud_mask as engine


def _write_card(base_card: dict, onnx_path: Path, variant_id: str) -> None:
    import hashlib

    card = json.loads(json.dumps(base_card))
    card["id"] = variant_id
    card["onnx_file"] = onnx_path.name
    card["onnx_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card["description"] = f"benchmark variant {variant_id} of {base_card['id']} (not for release)"
    (onnx_path.parent / f"{variant_id}.json").write_text(json.dumps(card, indent=2))


class _ChipReader:
    """Calibration data for ``quantize_static``: 256x256 crops of real chips, one per call."""

    def __init__(self, chips: list, input_name: str):
        self._items = iter(
            [{input_name: np.ascontiguousarray(chip[:, y : y + 256, x : x + 256].astype(np.float32)[None])}
             for chip in chips for y in (0, 256) for x in (0, 256)]
        )

    def get_next(self):
        return next(self._items, None)


def build_variants(model, workdir: Path, calibration_chips: list) -> dict:
    """Write the variants into ``workdir``; return {variant_id: {"dir": ..., "onnx": ..., "error": ...}}."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "fp32.onnx"
    shutil.copyfile(model.onnx_path, source)
    base_id = model.card["id"]
    variants = {}

    def attempt(variant_id: str, build):
        target = workdir / f"{variant_id}.onnx"
        try:
            build(target)
            _write_card(model.card, target, variant_id)
            variants[variant_id] = {"dir": str(workdir), "onnx": str(target), "size_mb": target.stat().st_size / 1e6}
        except Exception as exc:  # quantisers raise many unrelated types; the report shows which variant failed and why
            variants[variant_id] = {"error": f"{type(exc).__name__}: {exc}"[:300]}

    prepared = workdir / "fp32_prepared.onnx"
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantise the plain file when it fails
        shutil.copyfile(source, prepared)

    attempt(f"{base_id}-int8-dynamic",
            lambda t: quantize_dynamic(str(prepared), str(t), weight_type=QuantType.QInt8, per_channel=True))
    attempt(
        f"{base_id}-int8-static",
        lambda t: quantize_static(
            str(prepared), str(t), _ChipReader(calibration_chips, model.input_name),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, op_types_to_quantize=["Conv"],
        ),
    )

    def fp16(target):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(converted, str(target))

    attempt(f"{base_id}-fp16", fp16)
    return variants


def agreement(reference_codes: list, variant_codes: list) -> dict:
    """Pixel agreement and cloud F1 (codes 3+4 vs the rest) of a variant against the fp32 model's codes."""
    ref = np.concatenate([c.ravel() for c in reference_codes])
    var = np.concatenate([c.ravel() for c in variant_codes])
    ref_cloud, var_cloud = np.isin(ref, (3, 4)), np.isin(var, (3, 4))
    tp = int((ref_cloud & var_cloud).sum())
    denom = int(ref_cloud.sum() + var_cloud.sum())
    return {
        "pixel_agreement": float((ref == var).mean()),
        "cloud_f1_vs_fp32": (2 * tp / denom) if denom else 1.0,
        "pixels": int(ref.size),
    }


def codes_for_chips(model_id: str, model_dir, chips: list) -> list:
    """Engine class codes for (4, H, W) DN chips with the given model."""
    model = engine.load_model(model_id, None if model_dir is None else str(model_dir), 2)
    options = engine.parse_context({"model": model_id, "model_dir": None if model_dir is None else str(model_dir)})
    return [engine.mask_array(chip[None], options, model, pixel_size_m=10.0)[0, 0] for chip in chips]


def evaluate_variant(onnx_path, base_card: dict, workdir: Path, synthetic_scenes: int = 48,
                     timeout: float = 1800) -> dict:
    """Run the project's evaluation (``models.training.evaluate --model-dir``) on a variant; return key metrics.

    The evaluation always loads ``cloudmask-s2-4band``, so the variant is copied
    under that name with a matching card into its own folder (its
    EVALUATION.md and figures land there, never in ``models/``). Slow
    (minutes): only with ``benchmarks.run --evaluate-variants``.
    """
    import os
    import subprocess
    import sys

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_id = base_card["id"]
    target = workdir / f"{model_id}.onnx"
    shutil.copyfile(onnx_path, target)
    card = json.loads(json.dumps(base_card))
    card["onnx_file"] = target.name
    import hashlib

    card["onnx_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (workdir / f"{model_id}.json").write_text(json.dumps(card, indent=2))
    command = [sys.executable, "-m", "openeo_cloudmask.models.training.evaluate", "--model-dir", str(workdir),
               "--skip-speed", "--synthetic-scenes", str(synthetic_scenes)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ))
    if done.returncode != 0:
        return {"error": f"evaluation failed ({done.returncode}): {done.stderr[-500:]}"}
    return key_metrics(json.loads((workdir / f"{model_id}.json").read_text()).get("metrics", {}))


def key_metrics(metrics: dict) -> dict:
    """The evaluation numbers compared between fp32 and a variant (ours only)."""
    out = {}
    paths = {
        "weak_label_cloud_f1": ("weak_labels", "pooled", "ours", "f1"),
        "synthetic_cloud_or_semi_f1": ("synthetic", "ours", "cloud_or_semi", "f1"),
        "synthetic_cloud_shadow_f1": ("synthetic", "ours", "cloud_shadow", "f1"),
        "synthetic_clear_f1": ("synthetic", "ours", "clear", "f1"),
    }
    for name, path in paths.items():
        value = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out
