"""Paired timing of today's engine against the engine of a git tag, same model, same scene, alternating runs.

    python -m benchmarks.engine_vs_tag [--tag 05c574c] [--rounds 7]

The default is the commit tagged ``experiments-2026-11`` (before the training code was pruned), by its hash, since a
clone may lack the tag.

The engine is one self-contained file (``udf/cloud_mask.py``), so the tag's version is read with ``git show`` and
imported beside today's. Both mask the same 2048 x 2048 mosaic of real chips (``../shared/data``) with the shipped
model through ``mask_cube``; the script checks that their answers are identical, then alternates the two so that the
paired ratio survives a busy machine. Prints the times and the median of today's speed over the tag's.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask.models.training import scenes
from openeo_cloudmask.udf import cloud_mask as engine

REPO = Path(__file__).resolve().parents[1]
CHIPS = ("oncloudn_unlabelled_kgpz.nc", "oncloudn_unlabelled_khas.nc", "oncloudn_runtime_akny.nc",
         "cairo_kaggle_weaklabel_100301.nc")


def tag_engine(tag: str):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{tag}:udf/cloud_mask.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "tag_engine.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("tag_engine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scene() -> xr.DataArray:
    chips = [scenes.load_file(f)[0].dn for f in CHIPS]
    dn = np.tile(np.block([[chips[0], chips[1]], [chips[2], chips[3]]]), (1, 2, 2)).astype(np.uint16)
    coords = {"bands": list(scenes.MODEL_BANDS), "y": 5e6 - 10 * np.arange(2048.0), "x": 4e5 + 10 * np.arange(2048.0)}
    return xr.DataArray(dn, dims=("bands", "y", "x"), coords=coords)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="05c574c", help="a tag or commit (default: experiments-2026-11's commit)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    old, cube, context = tag_engine(args.tag), scene(), {"model_dir": str(REPO / "models")}
    same = np.array_equal(engine.mask_cube(cube, context).values, old.mask_cube(cube, context).values)
    print(f"identical answers: {same}")
    times = {"tag": [], "today": []}
    for _ in range(args.rounds):
        for name, module in (("tag", old), ("today", engine)):
            start = time.perf_counter()
            module.mask_cube(cube, context)
            times[name].append(time.perf_counter() - start)
    ratios = [t / n for t, n in zip(times["tag"], times["today"])]
    print({name: [round(t, 3) for t in ts] for name, ts in times.items()})
    print(f"today's speed / {args.tag}'s, paired median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}, {args.rounds} rounds)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
