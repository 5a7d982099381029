"""Train the default cloud-mask model, export it to ONNX and write its card. One command, fixed seed:

    python -m openeo_cloudmask.models.training.train            # the shipped model (defaults)
    python -m openeo_cloudmask.models.training.train --steps 200 --out /tmp/try

Each step draws a batch of crops, part synthetic (clouds and shadows composited
onto clear backgrounds, exact 5-class labels, see synthetic.py) and part real
(ukis-csmask ensemble teacher labels, set label {3, 4} for teacher cloud,
weighted by a power of their confidence, see teacher.py). The budget is a number of
optimiser steps with a cosine learning rate over them, so the same command
trains the same steps on any machine, loaded or not (the wall time is recorded).
The full configuration is written to ``models/training/config.json`` and into
the card. Held-out scenes (scenes.py) are never loaded here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training.card import CARD_PATH, MODEL_ID, ONNX_PATH, build_card, write_card
from openeo_cloudmask.models.training.synthetic import (
    PATH_RADIANCE_PROBABILITY,
    RELIEF_MODES,
    SEMI_ALBEDO,
    SEMI_ALBEDO_MIN,
    SEMI_CONTRAST,
    SHADOW_TRANSMISSIONS,
    downsample,
    procedural_background,
    sea_background,
    synthesize_sets,
)
from openeo_cloudmask.models.training.teacher import (
    TEACHER_DESCRIPTION,
    UKIS_TO_OURS,
    membership_targets,
    teacher_probabilities,
)

CONFIG_PATH = Path(__file__).resolve().parent / "config.json"

BACKGROUND_SOURCES = ("wright_clear", "teacher_clear_crops", "procedural", "sea")
TEACHER_TARGETS = ("hard", "soft")
#: the teacher's classes, in its probabilities' order, as sets of our output channels (code - 1)
TEACHER_SETS = tuple(tuple(code - 1 for code in UKIS_TO_OURS[k]) for k in sorted(UKIS_TO_OURS))
DEFAULT_CONFIG = {
    "version": "1.3.0",
    "seed": 20260101,
    "max_steps": 4000,
    "widths": [24, 48, 80, 128],
    "stem": 4,
    # "plain": logits from the quarter-resolution features; "pixel": plus a 1x1 convolution of each pixel's own
    # bands (network.PixelHead); "block": from the features and each cell's raw 4x4 block (network.BlockHead);
    # head_hidden hidden channels (0: linear)
    "head": "pixel",
    "head_hidden": 4,
    "crop": 192,
    "batch": 12,
    "synthetic_fraction": 0.5,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "warmup_steps": 60,
    "synthetic_class_weights": {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.2, "5": 0.5},
    # a layer over a bright surface is labelled semi-transparent cloud from this albedo (see synthetic.py)
    "synthetic_semi_albedo": SEMI_ALBEDO,
    # ... and over dark surfaces from this x the surface's mean reflectance, never below the minimum
    "synthetic_semi_contrast": SEMI_CONTRAST,
    "synthetic_semi_albedo_min": SEMI_ALBEDO_MIN,
    # within these relative distances of the clear/semi and clear/shadow thresholds a synthetic pixel may be
    # either class (set labels, see synthetic.synthesize_sets); 0 = exact labels
    "synthetic_layer_tolerance": 0.0,
    "synthetic_shadow_tolerance": 0.0,
    # cloud-top relief (shade) scales the layer's "albedo" (shaded cloud also lets more surface light through)
    # or only its reflected light ("reflectance"; transmission then follows the optical thickness)
    "synthetic_relief": "albedo",
    # True: clouds in the margin around a crop cast shadows into it (shadows up to the margin long);
    # False: only clouds in the crop cast shadows, up to synthetic_shadow_max_px long
    "synthetic_offcrop_shadows": False,
    "synthetic_shadow_max_px": 64,
    # over open water this share of the direct light's part stays in shadow (skylight); 0 = as over land
    "synthetic_water_diffuse": 0.0,
    # one sun elevation per scene, and higher cloud layers shade lower ones (a low cloud in a high one's shadow is
    # dark grey and still cloud; synthetic._shaded_layers)
    "synthetic_layer_shading": False,
    # light reaching a shadowed surface: "direct" exp(-tau) or "total" 1 - A (synthetic.SHADOW_TRANSMISSIONS)
    "synthetic_shadow_transmission": "direct",
    # share of synthetic crops given an L1C-like (Rayleigh-shaped) path radiance
    "synthetic_path_radiance": PATH_RADIANCE_PROBABILITY,
    # the exported weights are an exponential moving average of the trained ones (steadier across seeds)
    "ema_decay": 0.999,
    "teacher_shadow_weight": 1.0,
    # teacher pixels weigh (ensemble confidence) ** this in the loss
    "teacher_confidence_power": 1.0,
    # teacher crops' targets (TEACHER_TARGETS): "hard" = the ensemble's winning class (as a set label), "soft" =
    # cross-entropy against its probabilities over its classes clear, cloud {3, 4} and shadow (distillation)
    "teacher_targets": "hard",
    # photometric copies of the teacher scenes, each relabelled by the teacher on the copy, so that the student
    # learns the teacher's answers over darker and brighter surfaces than its few places show (photometric_copies):
    # copies per scene (0 = off), the log-uniform range of the copy's gain, its per-band jitter, and the share of
    # teacher crops drawn from a copy instead of the scene itself
    "teacher_copies": 0,
    "teacher_copy_gain": [0.4, 1.25],
    "teacher_copy_band_jitter": 0.1,
    "teacher_copy_share": 0.5,
    # processing levels whose scenes get copies: a gain on top-of-atmosphere (L1C) reflectance would also scale
    # its path radiance, which no real scene does
    "teacher_copy_levels": ["L2A"],
    # distillation: folders of trained models (ONNX + card) whose mean probabilities are soft targets on the
    # synthetic crops, added to the exact-label loss with this weight (see distill.py); [] = off
    "distill_from": [],
    "distill_weight": 1.0,
    # fine-tuning: start from these torch weights (a checkpoint of the same network) instead of random ones; None = off
    "init_from": None,
    # a second phase after max_steps (None = off): {"steps": N, KEY: value, ...} trains N more steps from the first
    # phase's EMA weights with those config overrides, seeded afresh (finetune_config)
    "finetune": None,
    "scale_probabilities": {"1": 0.65, "2": 0.25, "3": 0.10},
    "teacher_scale_probabilities": {"1": 0.75, "2": 0.25},
    # shares of the synthetic crops' clear backgrounds (BACKGROUND_SOURCES; "sea": synthetic.sea_background)
    "background_sources": {"wright_clear": 0.35, "teacher_clear_crops": 0.35, "procedural": 0.30},
    "teacher_clear_crop_max_cloud_fraction": 0.01,
    "synthetic_margin": 64,
    # v1.2.0 was trained on 1 thread; another thread count may sum in another order and train another model
    "torch_threads": 1,
    # clear backgrounds are scaled by this (dark and bright surfaces without clouds are not shadow/cloud)
    "background_brightness": [0.55, 1.5],
    # Tiling, measured with the engine (README "Tiling"): chunks run as one window up to 2048 px, a 192 px
    # halo makes chunked results match whole-scene ones, and 512 + 2 x 192 px backend chunks stay small.
    "recommended_window": 2048,
    "recommended_overlap": 256,
    "recommended_chunk": 512,
    "min_tile_size": 64,
    # the torch weights stay outside the repository (only the ONNX file ships); {run} is the --out folder's name,
    # so that runs of one seed into different folders keep their own weights
    "checkpoint": "/tmp/openeo_cloudmask_checkpoint_{run}_seed{seed}.pt",
}


def check_config(config: dict) -> None:
    """Refuse choices the synthetic generator would only reject after the teacher labels are made (minutes in)."""
    unknown = set(config["background_sources"]) - set(BACKGROUND_SOURCES)
    if unknown:
        raise ValueError(f"background_sources: unknown source(s) {sorted(unknown)}; use {', '.join(BACKGROUND_SOURCES)}")
    if config["init_from"] and not Path(config["init_from"]).is_file():
        raise ValueError(f"init_from: no checkpoint at {config['init_from']}; give a file that train.py saved (its 'checkpoint')")
    if config["finetune"]:
        unknown = set(config["finetune"]) - set(DEFAULT_CONFIG) - {"steps"}
        reserved = set(config["finetune"]) & {"max_steps", "init_from", "finetune"}
        if "steps" not in config["finetune"] or unknown or reserved:
            raise ValueError(
                f"finetune: {config['finetune']} must be {{\"steps\": N, KEY: value, ...}} with training config keys"
                + (f"; unknown key(s) {sorted(unknown)}" if unknown else "")
                + (f"; {sorted(reserved)} are set by the phase itself" if reserved else "")
            )
        check_config(finetune_config(config, None))
    low, high = config["teacher_copy_gain"]
    if not 0 < low <= high:
        raise ValueError(f"teacher_copy_gain: {config['teacher_copy_gain']} is not a range [low, high] with 0 < low <= high")
    if not 0 <= config["teacher_copy_share"] <= 1:
        raise ValueError(f"teacher_copy_share: {config['teacher_copy_share']} is not a share between 0 and 1")
    for key, allowed in (
        ("synthetic_relief", RELIEF_MODES),
        ("synthetic_shadow_transmission", SHADOW_TRANSMISSIONS),
        ("teacher_targets", TEACHER_TARGETS),
    ):
        if config[key] not in allowed:
            raise ValueError(f"{key}: unknown value {config[key]!r}; use one of {', '.join(allowed)}")


def _pick(rng: np.random.Generator, table: dict):
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


def random_crop(rng: np.random.Generator, arrays: list, size: int) -> list:
    """The same random (size x size) crop of every (C, H, W) array; reflection-pads arrays smaller than size."""
    h, w = arrays[0].shape[-2:]
    if h < size or w < size:
        pad = ((0, 0), (0, max(0, size - h)), (0, max(0, size - w)))
        arrays = [np.pad(a, pad, mode="symmetric") for a in arrays]
        h, w = arrays[0].shape[-2:]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return [a[..., y : y + size, x : x + size] for a in arrays]


def dihedral(rng: np.random.Generator, arrays: list) -> list:
    k, flip = rng.integers(0, 4), rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


class Sampler:
    """Draws training crops (dn, membership, weight, soft, is_synthetic) from synthetic and teacher sources.

    ``soft`` (3, H, W) holds the teacher's probabilities where ``teacher_targets`` is "soft", else zeros.
    """

    def __init__(self, config: dict, teacher_scenes: list, teacher_probs: list, backgrounds: list, rng, copies=None):
        self.config = config
        self.copies = copies or []  # per teacher scene, its (copy, probabilities) pairs (photometric_copies)
        self.rng = rng
        self.teacher_scenes = teacher_scenes
        self.teacher_probs = teacher_probs
        self.backgrounds = backgrounds
        sizes = np.array([s.dn.shape[1] * s.dn.shape[2] for s in teacher_scenes], dtype=float)
        self.teacher_p = np.sqrt(sizes) / np.sqrt(sizes).sum()
        cloud_free = config["teacher_clear_crop_max_cloud_fraction"]
        # clear crops of teacher scenes: pixel grids where the teacher sees (almost) no cloud or shadow
        self.clear_sources = []
        for scene, probs in zip(teacher_scenes, teacher_probs):
            cloudy = np.argmax(probs, axis=0) > 0
            if cloudy.mean() <= cloud_free and not scene.nodata.any():
                self.clear_sources.append(scene.dn / 10000.0)
        self.class_weights = np.array([config["synthetic_class_weights"][str(c)] for c in range(1, 6)], np.float32)
        self.synthetic_options = {
            "semi_albedo": config["synthetic_semi_albedo"],
            "semi_contrast": config["synthetic_semi_contrast"],
            "semi_albedo_min": config["synthetic_semi_albedo_min"],
            "layer_tolerance": config["synthetic_layer_tolerance"],
            "shadow_tolerance": config["synthetic_shadow_tolerance"],
            "relief": config["synthetic_relief"],
            "path_radiance_probability": config["synthetic_path_radiance"],
            "offcrop_shadows": config["synthetic_offcrop_shadows"],
            "shadow_max_px": config["synthetic_shadow_max_px"],
            "water_diffuse": config["synthetic_water_diffuse"],
            "layer_shading": config["synthetic_layer_shading"],
            "shadow_transmission": config["synthetic_shadow_transmission"],
        }

    def synthetic(self, size: int):
        rng, cfg = self.rng, self.config
        factor = int(_pick(rng, cfg["scale_probabilities"]))
        source = _pick(rng, cfg["background_sources"])
        if source == "procedural" or (source == "teacher_clear_crops" and not self.clear_sources):
            background = procedural_background(rng, size * factor)
        elif source == "sea":
            background = sea_background(rng, size * factor)
        else:
            pool = self.backgrounds if source == "wright_clear" else self.clear_sources
            (background,) = random_crop(rng, [pool[rng.integers(len(pool))]], size * factor)
        (background,) = dihedral(rng, [background])
        background = downsample(background, factor) * rng.uniform(0.85, 1.15, (4, 1, 1))
        background = background * rng.uniform(*cfg["background_brightness"])
        background = np.clip(background, 0.0005, 1.2).astype(np.float32)
        options = dict(self.synthetic_options, pixel_m=10.0 * factor)
        dn, label, member = synthesize_sets(background, rng, margin=cfg["synthetic_margin"], options=options)
        return dn, member, self.class_weights[label - 1], np.zeros((3,) + label.shape, np.float32), True

    def teacher(self, size: int):
        rng, cfg = self.rng, self.config
        index = rng.choice(len(self.teacher_scenes), p=self.teacher_p)
        scene, probs = self.teacher_scenes[index], self.teacher_probs[index]
        if self.copies and self.copies[index] and rng.random() < cfg["teacher_copy_share"]:
            scene, probs = self.copies[index][rng.integers(len(self.copies[index]))]
        factor = int(_pick(rng, cfg["teacher_scale_probabilities"]))
        dn, pr = random_crop(rng, [scene.dn, probs], size * factor)
        dn, pr = dihedral(rng, [dn, pr])
        if factor > 1:
            nodata = downsample(np.all(dn == 0, axis=0)[None].astype(np.float32), factor)[0] > 0
            dn, pr = downsample(dn, factor), downsample(pr, factor)
        else:
            nodata = np.all(dn == 0, axis=0)
        dn = dn * rng.uniform(0.95, 1.05, (4, 1, 1)) + rng.uniform(-40, 40, (4, 1, 1))
        dn = np.clip(dn, 1.0, 30000.0).astype(np.float32)
        dn[:, nodata] = 0.0
        member, weight = membership_targets(pr, nodata, cfg["teacher_confidence_power"])
        weight = np.where(member[1], weight * cfg["teacher_shadow_weight"], weight).astype(np.float32)
        soft = np.zeros((3,) + nodata.shape, np.float32)
        if cfg["teacher_targets"] == "soft":
            soft[:] = pr / np.maximum(pr.sum(axis=0, keepdims=True), 1e-6)
            soft[:, nodata] = 0.0  # nodata keeps its hard target {5}
        return dn, member, weight, soft, False

    def batch(self):
        """Stacked (dn, membership, weight, soft, is_synthetic) for one batch of crops."""
        cfg = self.config
        items = [
            self.synthetic(cfg["crop"]) if self.rng.random() < cfg["synthetic_fraction"] else self.teacher(cfg["crop"])
            for _ in range(cfg["batch"])
        ]
        return [np.stack(parts) for parts in zip(*items)]


def set_loss(logits, member, weight, soft=None):
    """Weighted negative log of the probability mass on each pixel's allowed class set.

    Where ``soft`` (N, 3, H, W) is given and a pixel's row is not all zero, that pixel's term is instead the
    cross-entropy of the student's mass on the teacher's sets (TEACHER_SETS) against those probabilities.
    """
    import torch

    log_p = torch.log_softmax(logits, dim=1)
    masked = log_p.masked_fill(~member, float("-inf"))
    nll = -torch.logsumexp(masked, dim=1)
    if soft is not None:
        set_log_p = torch.stack([torch.logsumexp(log_p[:, list(s)], dim=1) for s in TEACHER_SETS], dim=1)
        nll = torch.where(soft.sum(dim=1) > 0, -(soft * set_log_p).sum(dim=1), nll)
    return (nll * weight).sum() / weight.sum().clamp(min=1.0)


def load_training_data(log) -> tuple[list, list, list]:
    data_dir = scene_io.shared_data_dir()
    teacher_scenes = scene_io.load_group(scene_io.TEACHER_TRAIN, data_dir)
    start = time.time()
    teacher_probs = [teacher_probabilities(scene) for scene in teacher_scenes]
    log(f"teacher labels for {len(teacher_scenes)} scenes in {time.time() - start:.0f} s")
    backgrounds = [s.dn / 10000.0 for s in scene_io.load_group(scene_io.BACKGROUND_TRAIN, data_dir)]
    return teacher_scenes, teacher_probs, backgrounds


def photometric_copies(scenes: list, config: dict, log=print) -> list:
    """Per scene, ``teacher_copies`` (copy, teacher probabilities) pairs (none for scenes of a level outside
    ``teacher_copy_levels``); [] when copies are off.

    A copy scales every band by one log-uniform gain (``teacher_copy_gain``) times a per-band factor within
    +-``teacher_copy_band_jitter``; nodata stays 0. The teacher labels the copy itself, so its answers stay the
    teacher's own (a darkened cloud may become clear, a darkened field shadow), not the original scene's. Stored
    s2cloudless probabilities belong to the original image and are dropped. Its own random stream (from the seed)
    leaves the training draws as they are.
    """
    if not config["teacher_copies"]:
        return []
    rng = np.random.default_rng([config["seed"], 7])
    low, high = np.log(config["teacher_copy_gain"])
    jitter = config["teacher_copy_band_jitter"]
    start, out = time.time(), []
    for scene in scenes:
        nodata, copies = scene.nodata, []

        def scaled(dn, f):
            return np.where(nodata, 0.0, np.clip(dn * f[:, None, None], 1.0, 30000.0)).astype(np.float32)

        for k in range(config["teacher_copies"] if scene.level in config["teacher_copy_levels"] else 0):
            factors = (np.exp(rng.uniform(low, high)) * rng.uniform(1 - jitter, 1 + jitter, 6)).astype(np.float32)
            copy = dataclasses.replace(
                scene,
                name=f"{scene.name}_copy{k}",
                dn=scaled(scene.dn, factors[:4]),
                swir=None if scene.swir is None else scaled(scene.swir, factors[4:]),
                s2cloudless_probability=None,
            )
            copies.append((copy, teacher_probabilities(copy)))
        out.append(copies)
    levels = "/".join(config["teacher_copy_levels"])
    log(f"teacher labels for {config['teacher_copies']} photometric copies of each {levels} scene in {time.time() - start:.0f} s")
    return out


def train(config: dict, out_dir: Path, log=print) -> dict:
    """Train (and fine-tune, if ``finetune`` is set), save the torch weights, export ONNX and the card."""
    import torch

    data = load_training_data(log)
    checkpoint = Path(config["checkpoint"].format(seed=config["seed"], run=out_dir.name))
    model, config, steps, minutes, final_loss = train_phase(config, data, log)
    torch.save(model.state_dict(), checkpoint)
    if config["finetune"]:
        # exactly a second run started from the first one's saved weights (init_from), with its own seeding
        tuned = finetune_config(config, str(checkpoint))
        log(f"fine-tuning for {tuned['max_steps']} steps: {json.dumps(config['finetune'])}")
        model, tuned, more_steps, more_minutes, final_loss = train_phase(tuned, data, log)
        checkpoint = checkpoint.with_name(checkpoint.stem + "_finetuned.pt")
        torch.save(model.state_dict(), checkpoint)
        steps, minutes = steps + more_steps, minutes + more_minutes
    log(f"saved the torch weights to {checkpoint}")
    return finish(model, config, out_dir, steps, minutes, final_loss, log)


def finetune_config(config: dict, init_from: str) -> dict:
    """The second phase's config: ``finetune``'s overrides, its ``steps`` as the budget, from ``init_from``."""
    overrides = {k: v for k, v in config["finetune"].items() if k != "steps"}
    return dict(config, **overrides, max_steps=config["finetune"]["steps"], init_from=init_from, finetune=None)


def train_phase(config: dict, data: tuple, log=print) -> tuple:
    """One training run from ``config``'s seed: (EMA model, config as run, steps, minutes, final loss)."""
    import torch

    from openeo_cloudmask.models.training.network import build_network

    teacher_scenes, teacher_probs, backgrounds = data
    torch.set_num_threads(config["torch_threads"])
    torch.manual_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    sampler = Sampler(config, teacher_scenes, teacher_probs, backgrounds, rng, photometric_copies(teacher_scenes, config, log))
    log(f"{len(sampler.clear_sources)} teacher scenes serve as clear backgrounds")

    ensemble = None
    if config["distill_from"]:
        from openeo_cloudmask.models.training.distill import Ensemble, soft_loss

        ensemble = Ensemble(config["distill_from"], threads=config["torch_threads"])
        config = dict(config, distill_members=ensemble.record())
        log(f"distilling from {len(ensemble.members)} models")
    model = build_network(config)
    if config["init_from"]:
        model.load_state_dict(torch.load(config["init_from"]))
        log(f"starting from the weights in {config['init_from']}")
    optimiser = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    average = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config["ema_decay"]), use_buffers=True
    )
    start, losses = time.time(), []
    for step in range(config["max_steps"]):
        progress = step / config["max_steps"]
        lr = config["lr"] * min(1.0, (step + 1) / config["warmup_steps"]) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimiser.param_groups:
            group["lr"] = lr
        dn, member, weight, teacher_soft, synthetic = sampler.batch()
        soft = ensemble.probabilities(dn[synthetic]) if ensemble is not None and synthetic.any() else None
        dn, member, weight = (torch.from_numpy(a) for a in (dn, member, weight))
        teacher_soft = torch.from_numpy(teacher_soft) if config["teacher_targets"] == "soft" else None
        model.train()
        logits = model.logits(dn)
        loss = set_loss(logits, member, weight, teacher_soft)
        if soft is not None:
            chosen = torch.from_numpy(synthetic)
            loss = loss + config["distill_weight"] * soft_loss(logits[chosen], torch.from_numpy(soft), weight[chosen])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        average.update_parameters(model)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"step {step + 1} {(time.time() - start) / 60:.1f} min lr {lr:.2e} loss {np.mean(losses[-50:]):.4f}")
    minutes = (time.time() - start) / 60.0
    log(f"trained {config['max_steps']} steps in {minutes:.1f} min")
    return average.module, config, config["max_steps"], minutes, float(np.mean(losses[-200:]))


def finish(model, config: dict, out_dir: Path, steps: int, minutes: float, final_loss: float, log=print) -> dict:
    """Export the trained network to ONNX, check it against torch, write the card (metrics empty)."""
    import torch

    from openeo_cloudmask.models.training.export import check_against_torch, export_onnx
    from openeo_cloudmask.models.training.network import count_parameters, measure_receptive_field, normalisation_text

    model.eval()
    model.make_missing_a_rule()  # dark valid pixels must never be "missing" (seen on a dark held-out chip)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, out_dir / ONNX_PATH.name)
    diff = check_against_torch(model, onnx_path)
    if diff >= 1e-4:
        raise RuntimeError(f"{onnx_path}: onnxruntime differs from torch by {diff} (>= 1e-4)")
    receptive_field = measure_receptive_field(model)
    record = dict(config)
    record.update(
        {
            "steps": steps,
            "train_minutes": round(minutes, 2),
            "final_loss_mean_last_200": round(final_loss, 4),
            "parameters": count_parameters(model),
            "receptive_field_px": receptive_field,
            "onnx_vs_torch_max_abs_diff": diff,
            "onnx_opset": 17,
            "split": scene_io.split_record(),
            "torch_version": torch.__version__,
        }
    )
    tiling = {
        "receptive_field_px": receptive_field,
        "size_multiple": model.size_multiple,
        "min_tile_size": config["min_tile_size"],
        "recommended_window": config["recommended_window"],
        "recommended_overlap": config["recommended_overlap"],
        "recommended_chunk": config["recommended_chunk"],
    }
    card = build_card(record, tiling, normalisation_text(config), TEACHER_DESCRIPTION, onnx_path)
    write_card(card, out_dir / CARD_PATH.name)
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB, onnx-vs-torch {diff:.1e}) and its card")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the cloud-mask model (defaults reproduce the shipped model).")
    parser.add_argument("--steps", type=int, default=DEFAULT_CONFIG["max_steps"], help="optimiser steps (the budget)")
    parser.add_argument("--seed", type=int, default=DEFAULT_CONFIG["seed"])
    parser.add_argument("--threads", type=int, default=DEFAULT_CONFIG["torch_threads"], help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help='override one DEFAULT_CONFIG entry for an experiment, e.g. --set synthetic_fraction=0.3')
    parser.add_argument("--out", type=Path, default=ONNX_PATH.parent, help="folder for the ONNX file and card")
    args = parser.parse_args(argv)
    scene_io.shared_data_dir()  # exits with one clear line when the data are missing, before torch loads
    config = dict(DEFAULT_CONFIG, max_steps=args.steps, seed=args.seed, torch_threads=args.threads)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in config:
            parser.error(f"--set {item}: unknown key {key!r}; keys: {', '.join(sorted(config))}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {item}: the value must be JSON, e.g. --set '{key}=\"{value}\"' for a string")

    try:
        check_config(config)
    except ValueError as error:
        parser.error(f"--set: {error}")

    def log(message: str) -> None:
        print(message, flush=True)

    record = train(config, args.out, log)
    if args.out.resolve() == ONNX_PATH.parent.resolve():
        CONFIG_PATH.write_text(json.dumps(record, indent=2) + "\n")
        log(f"recorded the configuration in {CONFIG_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
