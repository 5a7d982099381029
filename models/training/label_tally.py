"""What the training labels teach in a few regions of the spectrum, by label source.

    python -m openeo_cloudmask.models.training.label_tally [--crops 1500] [--set KEY=JSON ...]

Draws ``--crops`` crops with the training sampler (the config's shares, with ``--set`` applied as in ``train``) and,
for the pixels of each region below, prints the weighted share each source labels clear, shadow and cloud. The
regions are where the models that fail the clear land put their shadow (false_shadow.py): bluish land of middling NIR,
dark land, and the dormant land they keep clear; and where the held-out sea ice lies. EXPERIMENTS.md ("A shadow needs
its cloud", "Sea ice in four bands") quotes its output.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from openeo_cloudmask.models.training import scenes as scene_io
from openeo_cloudmask.models.training import train
from openeo_cloudmask.udf.cloud_mask import CLEAR, SEMI, SHADOW

#: name -> (band or index, low, high) bounds, all of which a pixel must meet; reflectance. "nir" is B08, "blue/nir"
#: B02 / B08, "visible" the mean of B02, B03, B04, "nir/red" B08 / B04.
REGIONS = {
    "bluish, middling NIR": (("nir", 0.13, 0.19), ("blue/nir", 0.6, 0.85)),
    "dark": (("nir", 0.08, 0.13), ("blue/nir", 0.6, 1.1)),
    "dormant, clear-looking": (("nir", 0.2, 0.3), ("blue/nir", 0.35, 0.6)),
    # where the held-out sea ice lies (seaice_t33xvm: visible 0.43-0.81, B08/B04 0.58-0.86 from its 10th to 90th
    # percentile) and where snow, ice and cloud over them meet
    "bright, NIR below red": (("visible", 0.45, 0.85), ("nir/red", 0.7, 0.9)),
}


def indices(dn: np.ndarray) -> dict:
    refl = dn / 10000.0
    nir = np.maximum(refl[3], 1e-4)
    return {"nir": refl[3], "blue/nir": refl[0] / nir, "visible": refl[:3].mean(axis=0),
            "nir/red": refl[3] / np.maximum(refl[2], 1e-4)}


def tally(config: dict, crops: int, seed: int = 1) -> dict:
    """(region, source) -> [pixels, weight, clear, shadow, cloud] over ``crops`` sampled crops (weights summed)."""
    real, backgrounds, _ = train.load_training_data(config, lambda message: None)
    rng = np.random.default_rng(seed)
    sampler = train.Sampler(config, real, backgrounds, rng)
    totals = {}
    for _ in range(crops):
        source = train._pick(rng, sampler.shares)
        dn, member, weight = sampler.synthetic(config["crop"]) if source == "synthetic" else sampler.real_crop(source, config["crop"])
        values = indices(dn)
        single = member.sum(axis=0) == 1
        for name, bounds in REGIONS.items():
            where = np.logical_and.reduce([(values[key] >= lo) & (values[key] < hi) for key, lo, hi in bounds])
            if not where.any():
                continue
            w = weight[where]
            row = totals.setdefault((name, source), np.zeros(5))
            row += [where.sum(), w.sum(), (w * (member[CLEAR - 1] & single)[where]).sum(),
                    (w * (member[SHADOW - 1] & single)[where]).sum(), (w * (member[SEMI - 1:SEMI + 1].any(axis=0))[where]).sum()]
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=1500)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="as train's --set")
    args = parser.parse_args(argv)
    scene_io.shared_data_dir()  # exits with a clear line when the data are missing
    config = train.with_overrides(train.DEFAULT_CONFIG, args.set, parser.error)
    for (name, source), (pixels, weight, clear, shadow, cloud) in sorted(tally(config, args.crops).items()):
        weight = max(weight, 1e-9)
        print(f"{name:24s} {source:10s} {pixels:10.0f} px  clear {clear / weight:.3f}  shadow {shadow / weight:.3f}  "
              f"cloud {cloud / weight:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
