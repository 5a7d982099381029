"""Where labelled real clouds lie in B08 / B04, and which of them each model misses.

    python -m openeo_cloudmask.models.training.cloud_nir_red --model-dir models --model-dir /tmp/runs/U20260101

For the human-labelled chips (Chifunfu) and the weak-label chips, prints the share of the labelled cloud pixels in
each B08 / B04 bin, then, per ``--model-dir``, the share of all labelled cloud pixels that lie in the bin and that the
model does not call cloud (3 or 4). A diagnosis of held-out scenes: EXPERIMENTS.md ("Sea ice in four bands") uses
it to explain a run's result, never to choose a setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training.evaluate import HUMAN_CHIPS, WEAK_CHIPS, engine_classes

BINS = (0.0, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.2, np.inf)


def table(files, model_dirs: list) -> tuple[int, np.ndarray, dict]:
    """(cloud pixels, their share per bin, {model dir: share of all cloud pixels per bin that it misses})."""
    ratios, missed = [], {d: [] for d in model_dirs}
    for file in files:
        for scene in scene_io.load_file(file):
            label = scene.label_human if scene.label_human is not None else scene.label_weak
            cloud = (label == 1) & ~scene.nodata
            refl = scene.dn / 10000.0
            ratio = refl[3] / np.maximum(refl[2], 1e-4)
            ratios.append(ratio[cloud])
            for d in model_dirs:
                codes = engine_classes(scene.dn, scene.level, d)
                missed[d].append(ratio[cloud & ~np.isin(codes, (3, 4))])
    every = np.concatenate(ratios)
    share = np.histogram(every, BINS)[0] / max(every.size, 1)
    return every.size, share, {d: np.histogram(np.concatenate(m), BINS)[0] / max(every.size, 1) for d, m in missed.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, action="append", default=[], help="a model folder (repeatable)")
    args = parser.parse_args(argv)
    scene_io.shared_data_dir()  # exits with a clear line when the data are missing
    edges = " ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(BINS[:-1], BINS[1:]))
    for name, files in (("human labels (Chifunfu)", HUMAN_CHIPS), ("weak labels", WEAK_CHIPS)):
        count, share, missed = table(files, [d.resolve() for d in args.model_dir])
        print(f"{name}: {count} labelled cloud px; B08/B04 bins {edges}")
        print(f"  share of the cloud        {np.round(share, 3)}")
        for d, m in missed.items():
            print(f"  missed by {str(d)[-28:]:28s} {np.round(m, 3)} (all bins {m.sum():.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
