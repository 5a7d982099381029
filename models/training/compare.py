"""Score trained models (ours only) on the evaluation's held-out data: the rows of models/EXPERIMENTS.md.

    python -m openeo_cloudmask.models.training.compare /tmp/runA /tmp/runB ...
    python -m openeo_cloudmask.models.training.compare --ensemble /tmp/runA /tmp/runB
    python -m openeo_cloudmask.models.training.compare --log-offsets 0,0.5,0.5,0.5,0 models
    python -m openeo_cloudmask.models.training.compare --training-fit /tmp/runA

Each folder holds an ONNX file and its card (``train.py --out``). By default every
folder is scored on its own; ``--ensemble`` averages their probabilities (what
distillation or shipping several models would aim for). ``--log-offsets`` adds
per-class constants to the log-probabilities (codes 1..5) before the argmax: a
decision prior, to see how far a threshold shift alone moves each score.

``weak-label cloud F1, best threshold`` (and ``l1c_best_threshold`` in the JSON) takes
P(semi-transparent) + P(cloud) at its best threshold: a threshold-free measure
of the ranking, which a decision shift (or a model that is only one) leaves alone.

The JSON also splits synthetic cloud F1 by whether a pixel's 4x4 block (the
network's quarter-resolution cell) is one class in the truth or mixed.
``--training-fit`` adds how well each result reproduces the teacher on the
scenes the teacher labelled *for training* (recall of each teacher class, and
agreement): a fit measure, not a held-out score. A model that misses teacher
cloud there as well cannot blame the held-out scenes' novelty (about 2 min more).

It uses the same data as ``evaluate.py`` (the 48 held-out synthetic scenes, the
weak-label chips, the held-out real scenes and their teacher) and the same
engine, without the peers, speed or figures: under 20 s per model on idle cores. Prints
one JSON line and one Markdown row per result.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import evaluate as ev
from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training.card import MODEL_ID

COLUMNS = (
    ("synthetic cloud F1", lambda r: r["synthetic"]["cloud"]),
    ("shadow F1", lambda r: r["synthetic"]["cloud_shadow"]),
    ("semi F1", lambda r: r["synthetic"]["semi_transparent_cloud"]),
    ("weak-label cloud F1", lambda r: r["weak_labels"]),
    ("weak-label cloud F1, best threshold", lambda r: r["weak_labels_best_threshold"]["f1"]),
    ("L1C scene: teacher agreement", lambda r: r["agreement"].get("s2cloudless_testscene")),
    ("L1C scene: cloud F1 vs s2cloudless", lambda r: r["l1c_cloud_f1_vs_s2cloudless"]),
    ("102871 agreement", lambda r: r["agreement"].get("cairo_kaggle_weaklabel_102871")),
    ("101657 agreement (clear chip)", lambda r: r["agreement"].get("cairo_kaggle_weaklabel_101657")),
)


def probabilities(model, dn: np.ndarray, level: str = "L2A") -> np.ndarray:
    """(5, H, W) probabilities of codes 1..5 for (4, H, W) DN through the engine (tiling, nodata -> 5)."""
    from openeo_cloudmask.udf import cloud_mask as engine

    options = engine.parse_context({"processing_level": level, "output": "probabilities"})
    return engine.mask_array(dn[None].astype(np.float32), options, model)[0]


def classes(probs: np.ndarray, log_offsets=None) -> np.ndarray:
    """Codes 1..5 from (5, H, W) probabilities, after optional per-class log-probability offsets."""
    if log_offsets is None:
        return (np.argmax(probs, axis=0) + 1).astype(np.uint8)
    scores = np.log(np.maximum(probs, 1e-6)) + np.asarray(log_offsets, np.float32)[:, None, None]
    return (np.argmax(scores, axis=0) + 1).astype(np.uint8)


def best_threshold_f1(truth: np.ndarray, cloud_probability: np.ndarray) -> dict:
    """Cloud F1 at the best of the thresholds 0.05, 0.10 ... 0.95 on P(semi) + P(cloud), and that threshold.

    It scores the ranking alone: a model whose only change is a decision shift keeps it.
    """
    results = [(ev.scores(truth, cloud_probability >= t)["f1"] or 0.0, round(float(t), 2)) for t in np.arange(1, 20) / 20]
    f1, threshold = max(results)
    return {"f1": f1, "threshold": threshold}


def mixed_blocks(label: np.ndarray, size: int = 4) -> np.ndarray:
    """True for every pixel whose ``size`` x ``size`` block (the network's quarter-resolution cell) holds more than
    one truth class; pixels of a partial block at the right or bottom edge count as uniform."""
    h, w = (label.shape[0] // size) * size, (label.shape[1] // size) * size
    cells = label[:h, :w].reshape(h // size, size, w // size, size)
    mixed = cells.min(axis=(1, 3)) != cells.max(axis=(1, 3))
    out = np.zeros(label.shape, bool)
    out[:h, :w] = np.repeat(np.repeat(mixed, size, axis=0), size, axis=1)
    return out


def held_out_data() -> tuple[list, list]:
    """The evaluation's held-out synthetic scenes, and its held-out real scenes with their teacher codes."""
    real = []
    for scene in scene_io.load_group(scene_io.HELD_OUT):
        real.append((scene, ev.teacher_classes(scene)))
    return ev.synthetic_test_set(48), real


def training_data() -> list:
    """The teacher's training scenes with the teacher's codes on them (what :func:`training_fit` scores)."""
    return [(scene, ev.teacher_classes(scene)) for scene in scene_io.load_group(scene_io.TEACHER_TRAIN)]


def training_fit(predict, data: list) -> dict:
    """Our coarse codes against the teacher's on its training scenes, pooled: recall of each teacher class."""
    ours, truth = [], []
    for scene, teacher in data:
        valid = ~scene.nodata
        ours.append(ev._coarse(predict(scene.dn, scene.level))[valid])
        truth.append(teacher[valid])
    ours, truth = np.concatenate(ours), np.concatenate(truth)
    classes = ev.per_class(truth, ours, codes=(1, 2, 4))
    recall = {ev.CLASS_NAMES[c]: classes[ev.CLASS_NAMES[c]]["recall"] for c in (1, 2, 4)}
    return {"agreement": round(float(np.mean(ours == truth)), 4), "recall_of_teacher_class": recall}


def score(model_dirs: list, log_offsets=None, data=None, fit_data=None) -> dict:
    """Ours-only scores of the mean probabilities of ``model_dirs`` on :func:`held_out_data` (or ``data``)."""
    from openeo_cloudmask.udf import cloud_mask as engine

    # loaded once here: the engine's cache holds 8 models, and an ensemble may have more
    models = [engine.load_model(MODEL_ID, str(d), threads=2) for d in model_dirs]

    def mean_probabilities(dn, level="L2A"):
        return np.mean([probabilities(m, dn, level) for m in models], axis=0)

    def predict(dn, level="L2A"):
        return classes(mean_probabilities(dn, level), log_offsets)

    test, real = data or held_out_data()
    truth = np.concatenate([label.ravel() for _, label in test])
    pred = np.concatenate([predict(dn).ravel() for dn, _ in test])
    synthetic = {name: s["f1"] for name, s in ev.per_class(truth, pred).items()}
    # cloud F1 where a 4x4 cell is one class in truth and where it is mixed (boundaries inside a cell)
    mixed = np.concatenate([mixed_blocks(label).ravel() for _, label in test])
    by_block = {
        "mixed_share": round(float(mixed.mean()), 4),
        "uniform": ev.scores(truth[~mixed] == 4, pred[~mixed] == 4)["f1"],
        "mixed": ev.scores(truth[mixed] == 4, pred[mixed] == 4)["f1"],
    }
    weak_truth, weak_pred, weak_p, chips, agreement, l1c, l1c_best = [], [], [], {}, {}, None, None
    for scene, teacher in real:
        valid = ~scene.nodata
        probs = mean_probabilities(scene.dn, scene.level)
        ours = classes(probs, log_offsets)
        cloud_p = (probs[2] + probs[3])[valid]
        agreement[scene.name] = round(float(np.mean(ev._coarse(ours)[valid] == teacher[valid])), 4)
        cloud = np.isin(ours[valid], (3, 4))
        if scene.label_weak is not None:
            weak_truth.append(scene.label_weak[valid] == 1)
            weak_pred.append(cloud)
            weak_p.append(cloud_p)
            chips[scene.name] = ev.scores(weak_truth[-1], cloud)["f1"]
        if scene.s2cloudless_probability is not None:
            reference = scene.s2cloudless_probability[valid] >= 0.4
            l1c = ev.scores(reference, cloud)["f1"]
            l1c_best = best_threshold_f1(reference, cloud_p)
    weak = ev.scores(np.concatenate(weak_truth), np.concatenate(weak_pred))["f1"]
    fit = {"training_fit": training_fit(predict, fit_data)} if fit_data else {}
    return {
        "models": [str(d) for d in model_dirs],
        "log_offsets": log_offsets,
        "synthetic": synthetic,
        "synthetic_cloud_f1_by_4x4_block": by_block,
        "weak_labels": weak,
        "weak_labels_best_threshold": best_threshold_f1(np.concatenate(weak_truth), np.concatenate(weak_p)),
        "weak_label_chips": chips,
        "l1c_cloud_f1_vs_s2cloudless": l1c,
        "l1c_best_threshold": l1c_best,
        "agreement": agreement,
        **fit,
    }


def markdown_row(name: str, result: dict) -> str:
    return "| " + " | ".join([name] + [ev._fmt(get(result)) for _, get in COLUMNS]) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Score trained models (ours only) on the held-out evaluation data.")
    parser.add_argument("model_dirs", nargs="+", type=Path, help="folders with the ONNX file and card")
    parser.add_argument("--ensemble", action="store_true", help="score the mean probabilities of all folders")
    parser.add_argument("--log-offsets", help="five comma-separated log-probability offsets for codes 1..5")
    parser.add_argument(
        "--training-fit", action="store_true", help="also score agreement with the teacher on its training scenes"
    )
    args = parser.parse_args(argv)
    offsets = None
    if args.log_offsets:
        try:
            offsets = [float(x) for x in args.log_offsets.split(",")]
        except ValueError:
            offsets = []
        if len(offsets) != 5:
            parser.error(f"--log-offsets {args.log_offsets!r}: give five numbers for codes 1..5, e.g. 0,0.5,0.5,0.5,0")
    for d in args.model_dirs:
        if not (d / f"{MODEL_ID}.json").is_file():
            parser.error(f"{d} holds no {MODEL_ID}.json: give folders written by train.py --out")
    scene_io.shared_data_dir()  # exits with one clear line when the data are missing
    warnings.filterwarnings("ignore", category=UserWarning)
    groups = [args.model_dirs] if args.ensemble else [[d] for d in args.model_dirs]
    print("| run | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    data = held_out_data()  # once for all groups
    fit_data = training_data() if args.training_fit else None
    for group in groups:
        result = score(group, offsets, data, fit_data)
        name = " + ".join(d.name for d in group)
        print(json.dumps(result), file=sys.stderr)
        print(markdown_row(name, result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
