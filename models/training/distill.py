"""Soft targets from an ensemble of trained models (their ONNX files and cards), for distillation.

Several runs of one recipe differ more from each other than recipes do (models/EXPERIMENTS.md), and
their averaged probabilities score better than most single runs on the held-out synthetic scenes. A
student trained to match that average as well as the exact labels keeps one model's speed. The
members are loaded through the engine, so each one's card and sha256 are checked like any shipped model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training.card import MODEL_ID


class Ensemble:
    """Mean class probabilities of the models in ``dirs`` (each holding an ONNX file and its card)."""

    def __init__(self, dirs: list, threads: int = 1, model_id: str = MODEL_ID):
        from openeo_cloudmask.udf import cloud_mask as engine

        if not dirs:
            raise ValueError("an ensemble needs at least one model folder")
        self.members = [engine.load_model(model_id, str(Path(d)), threads=threads) for d in dirs]

    def probabilities(self, dn: np.ndarray) -> np.ndarray:
        """(N, K, H, W) mean probabilities for (N, 4, H, W) float32 DN (H, W multiples of 32)."""
        total = None
        for member in self.members:
            p = member.session.run([member.output_name], {member.input_name: dn})[0]
            total = p if total is None else total + p
        return total / len(self.members)

    def record(self) -> list:
        """What the card records about each member: enough to retrain it with train.py."""
        out = []
        for member in self.members:
            config = member.card.get("training", {}).get("config", {})
            out.append(
                {
                    "version": member.card["version"],
                    "onnx_sha256": member.card["onnx_sha256"],
                    "seed": config.get("seed"),
                    "synthetic_layer_tolerance": config.get("synthetic_layer_tolerance", 0.0),
                    "synthetic_shadow_tolerance": config.get("synthetic_shadow_tolerance", 0.0),
                    "synthetic_relief": config.get("synthetic_relief", "albedo"),
                }
            )
        return out


def soft_loss(logits, target, weight):
    """Weighted cross-entropy of the student's log-probabilities against soft ``target`` probabilities."""
    import torch

    log_p = torch.log_softmax(logits, dim=1)
    nll = -(target * log_p).sum(dim=1)
    return (nll * weight).sum() / weight.sum().clamp(min=1.0)
