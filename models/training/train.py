"""Train the default cloud-mask model, export it to ONNX and write its card. One command, fixed seed:

    python -m openeo_cloudmask.models.training.train            # the shipped model (defaults)
    python -m openeo_cloudmask.models.training.train --steps 200 --out /tmp/try

Each step draws a batch of crops from four label sources, in the shares of ``source_shares``:

* ``synthetic``: clouds and shadows composited onto clear backgrounds, exact 5-class labels
  (``openeo_cloudmask.synthetic``), over real clear scenes, the teacher scenes' clear crops and procedural
  surfaces, snow and ice among them;
* ``teacher``: real cloudy scenes labelled by the teacher ensemble (teacher.py);
* ``human``: people's cloud polygons (only with ``split`` "all": the one human-labelled acquisition is held out
  of every run that decides something);
* ``clear``: real scenes known to be cloud-free (sea, surf, beaches, winter land, sea ice), every pixel clear.

labels.py turns each real source into set labels and weights (including the rule for 3 against 4). The budget
is a number of optimiser steps with a cosine learning rate over them, so the same command trains the same steps
on any machine, loaded or not (the wall time is recorded). ``DEFAULT_CONFIG`` is the one source of defaults;
the full configuration is written to ``models/training/config.json`` and into the card. Held-out scenes
(scenes.py) are never loaded here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import labels
from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training.card import CARD_PATH, ONNX_PATH, build_card, write_card
from openeo_cloudmask.models.training.teacher import TEACHER_DESCRIPTION, teacher_probabilities
from openeo_cloudmask.synthetic import (
    CLOUD_ALBEDO,
    CLOUD_NIR_TINT,
    PATH_RADIANCE_PROBABILITY,
    SEMI_ALBEDO,
    SEMI_ALBEDO_MIN,
    SEMI_CONTRAST,
    SHADOW_MAX_PX,
    downsample,
    procedural_background,
    synthesize,
)

CONFIG_PATH = Path(__file__).resolve().parent / "config.json"

SOURCES = ("synthetic", "teacher", "human", "clear")
BACKGROUND_SOURCES = ("background_scenes", "clear_scenes", "teacher_clear_crops", "procedural")
DEFAULT_CONFIG = {
    "version": "2.1.1",
    "seed": 20260101,
    "max_steps": 6000,
    "widths": [24, 48, 80, 128],
    "stem": 4,
    # the pixel head's hidden channels (network.PixelHead; 0 = linear in the pixel's bands)
    "head_hidden": 4,
    "crop": 192,
    "batch": 12,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "warmup_steps": 60,
    # the exported weights are an exponential moving average of the trained ones (steadier across seeds)
    "ema_decay": 0.999,
    # scenes.SPLITS: "holdout" keeps scenes.HOLDOUT out (every run that decides something), "all" trains on them
    "split": "holdout",
    # shares of a batch's crops by label source (SOURCES); a source without scenes in the split gives its share away
    "source_shares": {"synthetic": 0.45, "teacher": 0.3, "human": 0.1, "clear": 0.15},
    "synthetic_class_weights": {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.2, "5": 0.5},
    # a layer is labelled opaque cloud from this albedo (see synthetic.py)
    "synthetic_cloud_albedo": CLOUD_ALBEDO,
    # a layer over a bright surface is labelled semi-transparent cloud from this albedo (see synthetic.py)
    "synthetic_semi_albedo": SEMI_ALBEDO,
    # ... and over dark surfaces from this x the surface's mean reflectance, never below the minimum
    "synthetic_semi_contrast": SEMI_CONTRAST,
    "synthetic_semi_albedo_min": SEMI_ALBEDO_MIN,
    "synthetic_shadow_max_px": SHADOW_MAX_PX,
    # share of synthetic crops drawn without any cloud layer: a dark or bluish (L1C path radiance) surface with no
    # cloud in view is clear, not shadow
    "synthetic_cloud_free": 0.0,
    # (low, high) range of a synthetic cloud layer's B08 albedo relative to its B02 (synthetic.CLOUD_NIR_TINT)
    "synthetic_cloud_nir_tint": list(CLOUD_NIR_TINT),
    # share of synthetic crops given an L1C-like (Rayleigh-shaped) path radiance
    "synthetic_path_radiance": PATH_RADIANCE_PROBABILITY,
    # share of procedural backgrounds that are snow and ice landscapes (synthetic.SNOW_SPECTRA)
    "synthetic_snow_probability": 0.4,
    # shares of the synthetic crops' clear backgrounds (BACKGROUND_SOURCES)
    "background_sources": {"background_scenes": 0.25, "clear_scenes": 0.2, "teacher_clear_crops": 0.2, "procedural": 0.35},
    "teacher_clear_crop_max_cloud_fraction": 0.01,
    # a crop's teacher shadow counts only if it covers at most this many times the area of the crop's teacher cloud
    # (a shadow needs its cloud in view, labels.py); null counts every teacher shadow (up to v2.0.0)
    "teacher_shadow_per_cloud": 2.0,
    # clear backgrounds are scaled by this (dark and bright surfaces without clouds are not shadow/cloud)
    "background_brightness": [0.55, 1.5],
    "synthetic_margin": 64,
    # people draw cloud edges generously: this many pixels on each side of a drawn edge weigh 0 (labels.py)
    "human_edge_px": 8,
    # pixel sizes (x 10 m) of synthetic and of real crops
    "scale_probabilities": {"1": 0.65, "2": 0.25, "3": 0.10},
    "real_scale_probabilities": {"1": 0.75, "2": 0.25},
    # another thread count may sum in another order and train another model
    "torch_threads": 1,
    # Tiling, measured with the engine (README "Tiling"): chunks run as one window up to 2048 px, a 256 px
    # halo makes chunked results match whole-scene ones, and 512 px backend chunks stay small.
    "recommended_window": 2048,
    "recommended_overlap": 256,
    "recommended_chunk": 512,
    "min_tile_size": 64,
    # the torch weights stay outside the repository (only the ONNX file ships); {run} is the --out folder's name
    "checkpoint": "/tmp/openeo_cloudmask_checkpoint_{run}_seed{seed}.pt",
}


def check_config(config: dict) -> None:
    """Refuse choices that would only fail minutes in, after the teacher labels are made."""
    for key, allowed in (("source_shares", SOURCES), ("background_sources", BACKGROUND_SOURCES)):
        unknown = set(config[key]) - set(allowed)
        if unknown:
            raise ValueError(f"{key}: unknown source(s) {sorted(unknown)}; use {', '.join(allowed)}")
    if config["split"] not in scene_io.SPLITS:
        raise ValueError(f"split: unknown value {config['split']!r}; use one of {', '.join(scene_io.SPLITS)}")


def _pick(rng: np.random.Generator, table: dict):
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


def random_crop(rng: np.random.Generator, arrays: list, size: int, valid: np.ndarray | None = None) -> list:
    """The same random (size x size) crop of every (C, H, W) array; reflection-pads arrays smaller than size.

    With ``valid`` (H, W) given, the crop is centred (as far as the image allows) on a random valid pixel, so
    that sparse scenes (chips pasted into a mostly empty tile) give crops with data.
    """
    h, w = arrays[0].shape[-2:]
    if h < size or w < size:
        pad = ((0, 0), (0, max(0, size - h)), (0, max(0, size - w)))
        arrays = [np.pad(a, pad, mode="symmetric") for a in arrays]
        valid = None if valid is None else np.pad(valid, pad[1:], mode="symmetric")
        h, w = arrays[0].shape[-2:]
    if valid is not None and valid.any():
        ys, xs = np.nonzero(valid)
        k = rng.integers(len(ys))
        y = int(np.clip(ys[k] - size // 2, 0, h - size))
        x = int(np.clip(xs[k] - size // 2, 0, w - size))
    else:
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return [a[..., y : y + size, x : x + size] for a in arrays]


def dihedral(rng: np.random.Generator, arrays: list) -> list:
    k, flip = rng.integers(0, 4), rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def _downsample_targets(member: np.ndarray, weight: np.ndarray, factor: int):
    """Targets of factor x factor blocks: the classes every pixel of a block allows; weight 0 where none is left."""
    if factor == 1:
        return member, weight
    c, h, w = member.shape
    member = member.reshape(c, h // factor, factor, w // factor, factor).all(axis=(2, 4))
    weight = downsample(weight[None], factor)[0] * member.any(axis=0)
    return member, weight.astype(np.float32)


class RealScene:
    """One real scene ready for cropping: its DN, what its label source knows, and where it has data."""

    def __init__(self, scene, source: str, payload=None):
        self.scene, self.source, self.payload = scene, source, payload
        self.valid = ~scene.nodata
        self.sparse = self.valid.mean() < 0.5

    def targets(self, dn: np.ndarray, payload, nodata: np.ndarray, config: dict):
        if self.source == "teacher":
            return labels.teacher_targets(payload, dn, nodata, config["teacher_shadow_per_cloud"])
        if self.source == "human":
            return labels.human_targets(payload[0], dn, nodata, config["human_edge_px"])
        return labels.clear_targets(nodata)


class Sampler:
    """Draws training crops (dn, membership, weight) from the label sources in the config's shares."""

    def __init__(self, config: dict, real: dict, backgrounds: list, rng):
        self.config = config
        self.rng = rng
        self.real = real  # source -> list of RealScene
        self.backgrounds = backgrounds
        shares = {s: v for s, v in config["source_shares"].items() if s == "synthetic" or real.get(s)}
        self.shares = shares
        cloud_free = config["teacher_clear_crop_max_cloud_fraction"]
        # clear crops of teacher scenes: pixel grids where the teacher sees (almost) no cloud or shadow
        self.teacher_clear = [
            r.scene.dn / 10000.0
            for r in real.get("teacher", [])
            if (np.argmax(r.payload, axis=0) > 0).mean() <= cloud_free and not r.scene.nodata.any()
        ]
        self.clear_scenes = list(real.get("clear", []))
        self.class_weights = np.array([config["synthetic_class_weights"][str(c)] for c in range(1, 6)], np.float32)
        self.synthetic_options = {
            "cloud_albedo": config["synthetic_cloud_albedo"],
            "semi_albedo": config["synthetic_semi_albedo"],
            "semi_contrast": config["synthetic_semi_contrast"],
            "semi_albedo_min": config["synthetic_semi_albedo_min"],
            "path_radiance_probability": config["synthetic_path_radiance"],
            "shadow_max_px": config["synthetic_shadow_max_px"],
            "cloud_nir_tint": tuple(config["synthetic_cloud_nir_tint"]),
        }

    def _background(self, size: int) -> np.ndarray:
        rng, cfg = self.rng, self.config
        source = _pick(rng, cfg["background_sources"])
        if source == "clear_scenes" and self.clear_scenes:
            for _ in range(8):  # a crop without nodata: the compositor's nodata is its own
                r = self.clear_scenes[rng.integers(len(self.clear_scenes))]
                (dn,) = random_crop(rng, [r.scene.dn], size, r.valid if r.sparse else None)
                if np.all(dn > 0):
                    return dn / 10000.0
        if source == "background_scenes" or (source == "teacher_clear_crops" and self.teacher_clear):
            pool = self.backgrounds if source == "background_scenes" else self.teacher_clear
            (background,) = random_crop(rng, [pool[rng.integers(len(pool))]], size)
            return background
        return procedural_background(rng, size, cfg["synthetic_snow_probability"])

    def synthetic(self, size: int):
        rng, cfg = self.rng, self.config
        factor = int(_pick(rng, cfg["scale_probabilities"]))
        background = self._background(size * factor)
        (background,) = dihedral(rng, [background])
        background = downsample(background, factor) * rng.uniform(0.85, 1.15, (4, 1, 1))
        background = background * rng.uniform(*cfg["background_brightness"])
        background = np.clip(background, 0.0005, 1.2).astype(np.float32)
        options = dict(self.synthetic_options, pixel_m=10.0 * factor)
        if cfg["synthetic_cloud_free"] and rng.random() < cfg["synthetic_cloud_free"]:
            options["kinds"] = []
        dn, label = synthesize(background, rng, margin=cfg["synthetic_margin"], options=options)
        member = np.stack([label == code for code in range(1, 6)])
        return dn, member, self.class_weights[label - 1]

    def real_crop(self, source: str, size: int):
        rng, cfg = self.rng, self.config
        pool = self.real[source]
        r = pool[rng.integers(len(pool))]
        factor = int(_pick(rng, cfg["real_scale_probabilities"]))
        payload = [] if r.payload is None else [r.payload]
        dn, *payload = random_crop(rng, [r.scene.dn] + payload, size * factor, r.valid if r.sparse else None)
        dn, *payload = dihedral(rng, [dn] + payload)
        nodata = np.all(dn == 0, axis=0)
        member, weight = r.targets(dn, payload[0] if payload else None, nodata, cfg)
        member, weight = _downsample_targets(member, weight, factor)
        if factor > 1:
            nodata = downsample(nodata[None].astype(np.float32), factor)[0] > 0
            dn = downsample(dn, factor)
            member[:, nodata] = False
            member[labels.MISSING - 1, nodata] = True
            weight[nodata] = 1.0
        dn = dn * rng.uniform(0.95, 1.05, (4, 1, 1)) + rng.uniform(-40, 40, (4, 1, 1))
        dn = np.clip(dn, 1.0, 30000.0).astype(np.float32)
        dn[:, nodata] = 0.0
        return dn, member, weight

    def batch(self):
        """Stacked (dn, membership, weight) for one batch of crops."""
        cfg = self.config
        items = []
        for _ in range(cfg["batch"]):
            source = _pick(self.rng, self.shares)
            items.append(self.synthetic(cfg["crop"]) if source == "synthetic" else self.real_crop(source, cfg["crop"]))
        return [np.stack(parts) for parts in zip(*items)]


def set_loss(logits, member, weight):
    """Weighted negative log of the probability mass on each pixel's allowed class set."""
    import torch

    log_p = torch.log_softmax(logits, dim=1)
    masked = log_p.masked_fill(~member, float("-inf"))
    nll = -torch.logsumexp(masked, dim=1)
    nll = torch.where(member.any(dim=1), nll, torch.zeros_like(nll))  # no allowed class: the pixel weighs 0
    return (nll * weight).sum() / weight.sum().clamp(min=1.0)


def load_training_data(config: dict, log) -> tuple[dict, list, list]:
    """(source -> [RealScene], backgrounds, the data record for the card) for the config's split."""
    data_dir = scene_io.shared_data_dir()
    groups = {source: scene_io.training_group(source, config["split"]) for source in scene_io.LABEL_SOURCES}
    scene_io.check_files(data_dir, [f for group in groups.values() for f in group])
    real, record = {}, []
    start = time.time()
    for source in ("teacher", "human", "clear"):
        real[source] = []
        for scene in scene_io.load_group(groups[source], data_dir):
            if source == "teacher":
                payload = teacher_probabilities(scene)
            elif source == "human":
                payload = scene.label_human[None]
            else:
                payload = None
            real[source].append(RealScene(scene, source, payload))
        log(f"{source}: {len(real[source])} scenes")
    log(f"real targets ready in {time.time() - start:.0f} s")
    backgrounds = [s.dn / 10000.0 for s in scene_io.load_group(groups["background"], data_dir)]
    for source, group in groups.items():
        for file in group:
            first = scene_io.load_file(file, [0] if group[file] else None, data_dir)[0]
            record.append({"file": file, "role": source, "licence": first.licence, "attribution": first.attribution})
    return real, backgrounds, record


def train(config: dict, out_dir: Path, log=print) -> dict:
    """Train, save the torch weights, export ONNX and the card."""
    import torch

    from openeo_cloudmask.models.training.network import build_network

    real, backgrounds, data_record = load_training_data(config, log)
    torch.set_num_threads(config["torch_threads"])
    torch.manual_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    sampler = Sampler(config, real, backgrounds, rng)
    log(f"sources and shares: {sampler.shares}; {len(sampler.teacher_clear)} teacher scenes serve as clear backgrounds")
    model = build_network(config)
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
        dn, member, weight = (torch.from_numpy(a) for a in sampler.batch())
        model.train()
        loss = set_loss(model.logits(dn), member, weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        average.update_parameters(model)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"step {step + 1} {(time.time() - start) / 60:.1f} min lr {lr:.2e} loss {np.mean(losses[-50:]):.4f}")
    minutes = (time.time() - start) / 60.0
    log(f"trained {config['max_steps']} steps in {minutes:.1f} min")
    checkpoint = Path(config["checkpoint"].format(seed=config["seed"], run=out_dir.name))
    torch.save(average.module.state_dict(), checkpoint)
    log(f"saved the torch weights to {checkpoint}")
    return finish(average.module, config, out_dir, minutes, float(np.mean(losses[-200:])), data_record, log)


def finish(model, config: dict, out_dir: Path, minutes: float, final_loss: float, data_record: list, log=print) -> dict:
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
            "steps": config["max_steps"],
            "train_minutes": round(minutes, 2),
            "final_loss_mean_last_200": round(final_loss, 4),
            "parameters": count_parameters(model),
            "receptive_field_px": receptive_field,
            "onnx_vs_torch_max_abs_diff": diff,
            "onnx_opset": 17,
            "split": scene_io.split_record(config["split"]),
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
    teacher = f"{TEACHER_DESCRIPTION} {labels.teacher_shadow_text(config['teacher_shadow_per_cloud'])}"
    card = build_card(record, tiling, normalisation_text(), teacher, labels.RULE_DESCRIPTION, data_record, onnx_path)
    write_card(card, out_dir / CARD_PATH.name)
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB, onnx-vs-torch {diff:.1e}) and its card")
    return record


def with_overrides(config: dict, items: list, error) -> dict:
    """``config`` with each ``KEY=JSON`` of ``items`` (``--set``) applied and checked; ``error`` reports a bad one."""
    config = dict(config)
    for item in items:
        key, _, value = item.partition("=")
        if key not in config:
            error(f"--set {item}: unknown key {key!r}; keys: {', '.join(sorted(config))}")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            error(f"--set {item}: the value must be JSON, e.g. --set '{key}=\"{value}\"' for a string")
    try:
        check_config(config)
    except ValueError as err:
        error(f"--set: {err}")
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the cloud-mask model (defaults reproduce the shipped model).")
    parser.add_argument("--steps", type=int, default=DEFAULT_CONFIG["max_steps"], help="optimiser steps (the budget)")
    parser.add_argument("--seed", type=int, default=DEFAULT_CONFIG["seed"])
    parser.add_argument("--threads", type=int, default=DEFAULT_CONFIG["torch_threads"], help="torch CPU threads")
    parser.add_argument("--split", choices=scene_io.SPLITS, default=DEFAULT_CONFIG["split"],
                        help="holdout: keep the held-out acquisitions out (default); all: train on them too")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help='override one DEFAULT_CONFIG entry for an experiment, e.g. --set human_edge_px=4')
    parser.add_argument("--out", type=Path, default=ONNX_PATH.parent, help="folder for the ONNX file and card")
    args = parser.parse_args(argv)
    scene_io.shared_data_dir()  # exits with one clear line when the data are missing, before torch loads
    config = dict(DEFAULT_CONFIG, max_steps=args.steps, seed=args.seed, torch_threads=args.threads, split=args.split)
    config = with_overrides(config, args.set, parser.error)

    def log(message: str) -> None:
        print(message, flush=True)

    record = train(config, args.out, log)
    if args.out.resolve() == ONNX_PATH.parent.resolve():
        CONFIG_PATH.write_text(json.dumps(record, indent=2) + "\n")
        log(f"recorded the configuration in {CONFIG_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
