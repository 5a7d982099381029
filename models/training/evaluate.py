"""Evaluate the shipped model beside ukis-csmask and a brightness-threshold floor, all in one run.

    python -m openeo_cloudmask.models.training.evaluate [--synthetic-scenes 48] [--skip-speed]

Needs no torch: our model runs through the engine (``udf/cloud_mask.py``,
onnxruntime). It writes

* ``models/EVALUATION.md``: Markdown tables
  - per-class precision / recall / F1 / IoU on held-out synthetic scenes
    (fixed seed; backgrounds never used in training);
  - agreement with the teacher ensemble on held-out real scenes;
  - cloud F1 against the weak labels (validation only, never trained on);
  - tiled-vs-whole agreement of the engine; throughput vs ukis-csmask;
* the card's ``metrics`` (and a refreshed ``onnx_sha256``);
* ``models/figures/real_scenes.png`` and ``models/figures/synthetic_scenes.png``.

"cloud" against the binary references (weak labels, teacher cloud) means our
codes 3 + 4 (semi-transparent and opaque cloud) together.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training.card import CARD_PATH, MODEL_ID, MODELS_DIR, refresh_card
from openeo_cloudmask.synthetic import downsample, synthesize
from openeo_cloudmask.models.training.teacher import teacher_probabilities, ukis_classes_as_ours, ukis_probabilities

EVALUATION_PATH = MODELS_DIR / "EVALUATION.md"
FIGURES_DIR = MODELS_DIR / "figures"
CLASS_NAMES = {1: "clear", 2: "cloud_shadow", 3: "semi_transparent_cloud", 4: "cloud", 5: "missing"}
CLASS_COLOURS = {1: "#3a7d2c", 2: "#4d4d4d", 3: "#9ecae1", 4: "#ffffff", 5: "#ff00ff"}
SYNTHETIC_SEED = 777
#: Brightness-threshold floor (reflectance): cloud / semi-transparent by mean visible reflectance, shadow by dark NIR.
THRESHOLD_CLOUD, THRESHOLD_SEMI, THRESHOLD_SHADOW_NIR = 0.25, 0.16, 0.08


# --------------------------------------------------------------------------- the three methods


_PATHS = {"models": MODELS_DIR}


def load_our_model():
    from openeo_cloudmask.udf import cloud_mask as engine

    return engine, engine.load_model(MODEL_ID, str(_PATHS["models"]), threads=2)


def ours_classes(dn: np.ndarray, level: str = "L2A") -> np.ndarray:
    """Our codes (H, W) for (4, H, W) DN through the engine (tiling, blending, nodata -> 5)."""
    engine, model = load_our_model()
    options = engine.parse_context({"processing_level": level})
    return engine.mask_array(dn[None].astype(np.float32), options, model)[0, 0]


def ours_whole_image(dn: np.ndarray) -> np.ndarray:
    """Probabilities from one ONNX call on the whole image, reflection-padded to the size multiple."""
    _, model = load_our_model()
    _, h, w = dn.shape
    m = model.size_multiple
    ph, pw = (-h) % m + max(0, model.min_tile_size - h), (-w) % m + max(0, model.min_tile_size - w)
    padded = np.pad(dn, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    return model.session.run([model.output_name], {model.input_name: padded[None].astype(np.float32)})[0][0, :, :h, :w]


def ukis_classes(dn: np.ndarray, level: str) -> np.ndarray:
    """ukis-csmask 4-band model at ``level`` (same bands as ours), as our codes."""
    nodata = np.all(dn == 0, axis=0)
    probs = ukis_probabilities(dn / 10000.0, level, six_band=False)
    return ukis_classes_as_ours(np.argmax(probs, axis=0), nodata)


def threshold_classes(dn: np.ndarray) -> np.ndarray:
    """The floor: bright visible -> cloud / semi-transparent, dark NIR -> shadow, else clear."""
    refl = dn / 10000.0
    visible = refl[:3].mean(axis=0)
    out = np.full(visible.shape, 1, np.uint8)
    out[refl[3] < THRESHOLD_SHADOW_NIR] = 2
    out[visible >= THRESHOLD_SEMI] = 3
    out[visible >= THRESHOLD_CLOUD] = 4
    out[np.all(dn == 0, axis=0)] = 5
    return out


# --------------------------------------------------------------------------- scores


def scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    def ratio(num, den):  # None (JSON null) where a score is undefined, e.g. a class that never occurs
        return round(num / den, 4) if den else None

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "support": int(tp + fn),
    }


def per_class(truth: np.ndarray, pred: np.ndarray, codes=(1, 2, 3, 4, 5)) -> dict:
    out = {CLASS_NAMES[c]: scores(truth == c, pred == c) for c in codes}
    out["cloud_or_semi"] = scores(np.isin(truth, (3, 4)), np.isin(pred, (3, 4)))
    return out


# --------------------------------------------------------------------------- evaluations


def synthetic_test_set(n_scenes: int, size: int = 256) -> list:
    """Held-out synthetic scenes (fixed seed) on backgrounds never used in training; 10 m and 20 m pixels."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    backgrounds = [s.dn / 10000.0 for s in scene_io.load_group(scene_io.SYNTHETIC_EVAL_BACKGROUNDS)]
    out = []
    for i in range(n_scenes):
        bg = backgrounds[i % len(backgrounds)]
        factor = 2 if (i % 4 == 3 and min(bg.shape[1:]) >= 2 * size) else 1
        y = rng.integers(0, bg.shape[1] - size * factor + 1)
        x = rng.integers(0, bg.shape[2] - size * factor + 1)
        crop = downsample(bg[:, y : y + size * factor, x : x + size * factor], factor).astype(np.float32)
        out.append(synthesize(np.clip(crop, 0.0005, 1.2), rng, options={"pixel_m": 10.0 * factor}))
    return out


def evaluate_synthetic(n_scenes: int, log) -> tuple[dict, list]:
    test = synthetic_test_set(n_scenes)
    truth = np.concatenate([label.ravel() for _, label in test])
    preds = {"ours": [], "ukis_csmask": [], "threshold": []}
    for dn, _ in test:
        preds["ours"].append(ours_classes(dn))
        preds["ukis_csmask"].append(ukis_classes(dn, "L2A"))
        preds["threshold"].append(threshold_classes(dn))
    log(f"synthetic: {n_scenes} scenes scored")
    result = {name: per_class(truth, np.concatenate([p.ravel() for p in ps])) for name, ps in preds.items()}
    return result, [(dn, label, preds["ours"][i], preds["ukis_csmask"][i]) for i, (dn, label) in enumerate(test[:4])]


def teacher_classes(scene) -> np.ndarray:
    """The training teacher's hard answer for a real scene, as our codes (1 clear, 2 shadow, 4 cloud, 5 missing)."""
    return ukis_classes_as_ours(np.argmax(teacher_probabilities(scene), axis=0), scene.nodata)


def _coarse(codes: np.ndarray) -> np.ndarray:
    """Our codes on the teacher's 3-class scale: 1 clear, 2 shadow, 4 cloud (3 and 4), 5 missing."""
    out = codes.copy()
    out[out == 3] = 4
    return out


def evaluate_real(log) -> tuple[dict, dict, list]:
    """Teacher agreement on held-out real scenes, and cloud F1 against the weak labels."""
    held_out = scene_io.load_group(scene_io.HELD_OUT)
    teacher_rows, figure_rows = {}, []
    weak = {"ours": ([], []), "ukis_csmask": ([], []), "threshold": ([], [])}
    per_chip = {}
    for scene in held_out:
        nodata = scene.nodata
        ours = ours_classes(scene.dn, scene.level)
        ukis = ukis_classes(scene.dn, scene.level)
        floor = threshold_classes(scene.dn)
        teacher = teacher_classes(scene)
        valid = ~nodata
        row = {}
        for name, pred in (("ours", ours), ("ukis_csmask_4band", ukis), ("threshold", floor)):
            agreement = float(np.mean(_coarse(pred)[valid] == teacher[valid]))
            row[name] = {
                "agreement": round(agreement, 4),
                "cloud_f1": scores(teacher[valid] == 4, np.isin(pred[valid], (3, 4)))["f1"],
                "shadow_f1": scores(teacher[valid] == 2, pred[valid] == 2)["f1"],
            }
        if scene.s2cloudless_probability is not None:
            ref = scene.s2cloudless_probability[valid] >= 0.4
            for name, pred in (("ours", ours), ("ukis_csmask_4band", ukis), ("threshold", floor)):
                row[name]["cloud_f1_vs_s2cloudless"] = scores(ref, np.isin(pred[valid], (3, 4)))["f1"]
        teacher_rows[scene.name] = row
        if scene.label_weak is not None:
            truth = scene.label_weak[valid] == 1
            per_chip[scene.name] = {}
            for name, pred in (("ours", ours), ("ukis_csmask", ukis), ("threshold", floor)):
                cloud = np.isin(pred[valid], (3, 4))
                weak[name][0].append(truth)
                weak[name][1].append(cloud)
                per_chip[scene.name][name] = {
                    "cloud_f1": scores(truth, cloud)["f1"],
                    "accuracy": round(float(np.mean(truth == cloud)), 4),
                }
        figure_rows.append((scene, ours, teacher))
        log(f"real: {scene.name} ours agreement {row['ours']['agreement']}")
    weak_pooled = {
        name: dict(scores(np.concatenate(t), np.concatenate(p)), accuracy=round(float(np.mean(np.concatenate(t) == np.concatenate(p))), 4))
        for name, (t, p) in weak.items()
    }
    return teacher_rows, {"pooled": weak_pooled, "per_chip": per_chip}, figure_rows


def tiled_vs_whole(log) -> dict:
    """Agreement of the engine's tiled inference with one whole-image ONNX call (argmax), per window/overlap.

    Test image: a 1024 x 1024 mosaic of four held-out 512 px chips, and the
    856 x 512 s2cloudless scene.
    """
    engine, model = load_our_model()
    chips = [scene_io.load_file(f)[0].dn for f in ("oncloudn_runtime_akny.nc", "cairo_kaggle_weaklabel_100301.nc",
                                                   "cairo_kaggle_weaklabel_101429.nc", "cairo_kaggle_weaklabel_102871.nc")]
    mosaic = np.block([[chips[0], chips[1]], [chips[2], chips[3]]])
    images = {"mosaic_1024": mosaic, "s2cloudless_testscene": scene_io.load_file("s2cloudless_testscene.nc")[0].dn}
    out = {}
    # overlap = context each window keeps on a shared side; below the receptive field's reach (~230 px)
    # the answer near seams differs, at the card's 256 px it is the whole-image answer
    for window, overlap in ((256, 64), (512, 128), (640, 256), (768, 256)):
        key = f"window{window}_overlap{overlap}"
        out[key] = {}
        for name, image in images.items():
            whole = np.argmax(ours_whole_image(image), axis=0)
            tiled = np.argmax(engine.predict(model, image.astype(np.float32), window=window, overlap=overlap), axis=0)
            out[key][name] = round(float(np.mean(whole == tiled)), 5)
        log(f"tiled vs whole {key}: {out[key]}")
    return out


# --------------------------------------------------------------------------- figures and report


def _rgb(dn: np.ndarray) -> np.ndarray:
    rgb = np.moveaxis(dn[[2, 1, 0]], 0, -1) / 10000.0
    valid = rgb[np.all(dn > 0, axis=0)]
    top = np.percentile(valid, 98) if valid.size else 0.3
    return np.clip(rgb / max(top, 0.05), 0, 1) ** 0.8


def _class_image(codes: np.ndarray) -> np.ndarray:
    from matplotlib.colors import to_rgb

    image = np.zeros(codes.shape + (3,))
    for code, colour in CLASS_COLOURS.items():
        image[codes == code] = to_rgb(colour)
    return image


def _legend(fig):
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=c, edgecolor="black", label=f"{k} {CLASS_NAMES[k]}") for k, c in CLASS_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False)


def real_figure(rows: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.4 * len(rows)))
    for i, (scene, ours, teacher) in enumerate(rows):
        for j, (image, title) in enumerate(((_rgb(scene.dn), f"{scene.name} ({scene.level}) RGB"),
                                             (_class_image(ours), "ours (cloudmask-s2-4band)"),
                                             (_class_image(teacher), "teacher (ukis-csmask ensemble)"))):
            axes[i, j].imshow(image, interpolation="nearest")
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    _legend(fig)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def synthetic_figure(rows: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 3.2 * len(rows)))
    for i, (dn, label, ours, ukis) in enumerate(rows):
        for j, (image, title) in enumerate(((_rgb(dn), "synthetic RGB"), (_class_image(label), "exact label"),
                                             (_class_image(ours), "ours"), (_class_image(ukis), "ukis-csmask 4-band"))):
            axes[i, j].imshow(image, interpolation="nearest")
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
    _legend(fig)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def report(metrics: dict) -> str:
    lines = [
        "# Evaluation of cloudmask-s2-4band",
        "",
        "Written by `python -m openeo_cloudmask.models.training.evaluate` (do not edit by hand). All methods were scored "
        "on the same data in the same run. Our model runs through the engine (`udf/cloud_mask.py`, recommended window "
        "and overlap); ukis-csmask is its 4-band model at the scene's level (the same four bands we use); the threshold "
        f"floor calls mean visible reflectance >= {THRESHOLD_CLOUD} cloud, >= {THRESHOLD_SEMI} semi-transparent, "
        f"B08 < {THRESHOLD_SHADOW_NIR} shadow. \"cloud or semi\" merges codes 3 and 4.",
        "",
        f"## Held-out synthetic scenes ({metrics['synthetic_scenes']} scenes of 256 px, seed {SYNTHETIC_SEED}, "
        "backgrounds never used in training: spyndex_s2_10m, cairo_kaggle_weaklabel_101657; a quarter at 20 m)",
        "",
        "| class | method | precision | recall | F1 | IoU | support (px) |",
        "|---|---|---|---|---|---|---|",
    ]
    synth = metrics["synthetic"]
    for cls in list(CLASS_NAMES.values()) + ["cloud_or_semi"]:
        for method in ("ours", "ukis_csmask", "threshold"):
            s = synth[method][cls]
            if method == "ukis_csmask" and cls == "semi_transparent_cloud":
                continue  # ukis-csmask has no semi-transparent class
            lines.append(f"| {cls} | {method} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {_fmt(s['f1'])} | {_fmt(s['iou'])} | {s['support']} |")
    lines += ["", "ukis-csmask has no semi-transparent class (its cloud covers both), so compare it on \"cloud or semi\".", ""]

    lines += [
        "## Weak labels (cairo_kaggle_weaklabel_*, 5 chips, validation only, never trained on)",
        "",
        "The weak labels are of unverified provenance and 20 m effective resolution: read them as a rough check. "
        "Cloud = codes 3 + 4.",
        "",
        "| method | cloud precision | cloud recall | cloud F1 | accuracy |",
        "|---|---|---|---|---|",
    ]
    for method, s in metrics["weak_labels"]["pooled"].items():
        lines.append(f"| {method} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {_fmt(s['f1'])} | {_fmt(s['accuracy'])} |")
    lines += ["", "| chip | ours F1 / acc | ukis-csmask F1 / acc | threshold F1 / acc |", "|---|---|---|---|"]
    for chip, row in metrics["weak_labels"]["per_chip"].items():
        cells = [f"{_fmt(row[m]['cloud_f1'])} / {_fmt(row[m]['accuracy'])}" for m in ("ours", "ukis_csmask", "threshold")]
        lines.append(f"| {chip} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## Agreement with the teacher ensemble on held-out real scenes",
        "",
        "Teacher = the training teacher (ukis-csmask 4-band + 6-band where B11/B12 exist, + s2cloudless where stored). "
        "Agreement is on the 3-class scale (clear / shadow / cloud incl. semi-transparent). These scenes were not used "
        "in training. The ukis-csmask 4-band column is part of the teacher, so it is not independent.",
        "",
        "| scene | method | agreement | cloud F1 | shadow F1 | cloud F1 vs s2cloudless mask |",
        "|---|---|---|---|---|---|",
    ]
    for scene, row in metrics["teacher_agreement"].items():
        for method, s in row.items():
            lines.append(f"| {scene} | {method} | {_fmt(s['agreement'])} | {_fmt(s['cloud_f1'])} | {_fmt(s['shadow_f1'])} | {_fmt(s.get('cloud_f1_vs_s2cloudless'))} |")

    lines += ["", "## Tiled vs whole-image inference (argmax agreement)", "", "| window / overlap | " + " | ".join(next(iter(metrics["tiled_vs_whole"].values()))) + " |", "|---|---|---|"]
    for key, row in metrics["tiled_vs_whole"].items():
        lines.append(f"| {key} | " + " | ".join(f"{v:.5f}" for v in row.values()) + " |")

    speed = metrics.get("speed")
    if speed:
        lines += [
            "",
            "## Speed (onnxruntime CPU, float32, 2 threads, this machine, same run)",
            "",
            "| measure | value |",
            "|---|---|",
        ] + [f"| {k} | {v} |" for k, v in speed.items()]
        lines += ["", "The speed-up uses the slower of our two measurements. The machine is shared, so repeated runs vary."]
    lines += ["", "Figures: `figures/real_scenes.png` (held-out real scenes), `figures/synthetic_scenes.png`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the cloud-mask model beside ukis-csmask and a threshold floor.")
    parser.add_argument("--synthetic-scenes", type=int, default=48)
    parser.add_argument("--skip-speed", action="store_true", help="do not measure throughput (keeps the card's speed entry out)")
    parser.add_argument("--model-dir", type=Path, default=MODELS_DIR, help="folder with the ONNX file and card; "
                        "EVALUATION.md and figures/ are written there too")
    args = parser.parse_args(argv)
    _PATHS["models"] = args.model_dir
    scene_io.shared_data_dir()  # exits with a clear line when the data are missing
    warnings.filterwarnings("ignore", category=UserWarning)

    def log(message):
        print(message, flush=True)

    start = time.time()
    metrics = {"synthetic_scenes": args.synthetic_scenes}
    metrics["synthetic"], synthetic_rows = evaluate_synthetic(args.synthetic_scenes, log)
    metrics["teacher_agreement"], metrics["weak_labels"], figure_rows = evaluate_real(log)
    metrics["tiled_vs_whole"] = tiled_vs_whole(log)
    if not args.skip_speed:
        from openeo_cloudmask.models.training.speed import measure_speed

        metrics["speed"] = measure_speed(args.model_dir / f"{MODEL_ID}.onnx")
        log(f"speed: {metrics['speed']}")
    keep = [r for r in figure_rows if r[0].name in ("oncloudn_runtime_akny", "s2cloudless_testscene",
                                                    "cairo_kaggle_weaklabel_100301", "cairo_kaggle_weaklabel_101429",
                                                    "cairo_kaggle_weaklabel_102871")]
    figures = args.model_dir / FIGURES_DIR.name
    real_figure(keep, figures / "real_scenes.png")
    synthetic_figure(synthetic_rows, figures / "synthetic_scenes.png")
    metrics["evaluation_script"] = "python -m openeo_cloudmask.models.training.evaluate"
    card_path = args.model_dir / CARD_PATH.name
    refresh_card(metrics, card_path)
    (args.model_dir / EVALUATION_PATH.name).write_text(report(metrics))
    log(f"wrote {args.model_dir / EVALUATION_PATH.name}, {card_path} and figures in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
