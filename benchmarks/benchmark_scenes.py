"""Benchmark scenes of any size, tiled up from the real 512x512 chips in the shared data folder.

Throughput does not depend on *where* a scene is, but it does depend a little
on what is in it (an all-missing chunk skips the model; ukis-csmask and
s2cloudless are pixel-wise or tiled). So the scenes are mosaics of real
Sentinel-2 L2A chips (On Cloud N, the Cairo course chips, spyndex), mirrored
in turn so that neighbouring tiles join without a hard seam. Nothing is
copied into the repository: the mosaic is built in memory on every run.

For s2cloudless, which needs 10 bands of L1C top-of-atmosphere reflectance,
the 13-band s2cloudless test scene is mirror-tiled the same way. When the
shared folder is missing (a CI machine without it), a seeded synthetic scene
stands in, and ``source`` says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: Where the shared Sentinel-2 chips live; override with OPENEO_CLOUDMASK_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("OPENEO_CLOUDMASK_SHARED_DATA", REPO.parent / "shared" / "data"))

FOUR_BANDS = ("B02", "B03", "B04", "B08")
#: The bands s2cloudless's ``S2PixelCloudDetector(all_bands=False)`` takes, in its order.
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
FOUR_BAND_CHIPS = (
    "oncloudn_runtime_adwp.nc",
    "oncloudn_runtime_adwu.nc",
    "oncloudn_runtime_adwz.nc",
    "oncloudn_runtime_adxp.nc",
    "oncloudn_runtime_akny.nc",
    "cairo_kaggle_weaklabel_100301.nc",
    "cairo_kaggle_weaklabel_101429.nc",
    "cairo_kaggle_weaklabel_102871.nc",
)
S2CLOUDLESS_SCENE = "s2cloudless_testscene.nc"
#: Chips with a weak (unverified) human-drawn cloud label, for the fallback accuracy check.
WEAK_LABEL_CHIPS = (
    "cairo_kaggle_weaklabel_100301.nc",
    "cairo_kaggle_weaklabel_100909.nc",
    "cairo_kaggle_weaklabel_101429.nc",
    "cairo_kaggle_weaklabel_101657.nc",
    "cairo_kaggle_weaklabel_102871.nc",
)


def shared_data_available() -> bool:
    return all((SHARED_DATA / name).is_file() for name in FOUR_BAND_CHIPS + (S2CLOUDLESS_SCENE,))


def _read_bands(name: str, bands) -> np.ndarray:
    import xarray as xr

    with xr.open_dataset(SHARED_DATA / name, mask_and_scale=False) as ds:
        image = ds["reflectance"]
        if "t" in image.dims:
            image = image.isel(t=0)
        return np.asarray(image.sel(bands=list(bands)).transpose("bands", "y", "x").values)


def mirror_mosaic(tiles: list, height: int, width: int) -> np.ndarray:
    """Fill (C, height, width) with the (C, h, w) tiles, cycling through them row by row.

    Every other tile is flipped (left-right on odd columns, up-down on odd
    rows) so that edges meet their mirror image, as ``np.pad(mode="symmetric")``
    does, and no tile sits twice side by side unflipped.
    """
    channels, tile_h, tile_w = tiles[0].shape
    out = np.empty((channels, height, width), dtype=tiles[0].dtype)
    index = 0
    for row, y in enumerate(range(0, height, tile_h)):
        for col, x in enumerate(range(0, width, tile_w)):
            tile = tiles[index % len(tiles)]
            index += 1
            if col % 2:
                tile = tile[:, :, ::-1]
            if row % 2:
                tile = tile[:, ::-1, :]
            h, w = min(tile_h, height - y), min(tile_w, width - x)
            out[:, y : y + h, x : x + w] = tile[:, :h, :w]
    return out


def _synthetic_dn(channels: int, height: int, width: int, seed: int) -> np.ndarray:
    """Seeded stand-in: smooth bright blobs (clouds) over a darker textured ground, uint16 DN."""
    rng = np.random.default_rng(seed)
    ground = rng.integers(300, 3500, size=(channels, 1, 1)) * (0.6 + 0.4 * rng.random((channels, height, width)))
    yy, xx = np.mgrid[0:height, 0:width]
    blobs = np.zeros((height, width))
    for _ in range(6):
        cy, cx, r = rng.random() * height, rng.random() * width, (0.05 + 0.15 * rng.random()) * max(height, width)
        blobs = np.maximum(blobs, np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))))
    return np.clip(ground + 7000 * blobs, 1, 20000).astype(np.uint16)


def four_band_scene(height: int, width: int = None, seed: int = 0) -> tuple:
    """(dn (4, H, W) uint16 in B02,B03,B04,B08 order, source text). L2A digital numbers."""
    width = width or height
    if shared_data_available():
        tiles = [_read_bands(name, FOUR_BANDS) for name in FOUR_BAND_CHIPS]
        order = np.random.default_rng(seed).permutation(len(tiles))
        dn = mirror_mosaic([tiles[i] for i in order], height, width)
        return dn, f"mirror-tiled mosaic of {len(tiles)} real 512x512 L2A chips ({SHARED_DATA})"
    return _synthetic_dn(4, height, width, seed), "seeded synthetic scene (shared data folder not found)"


def s2cloudless_scene(height: int, width: int = None) -> tuple:
    """(reflectance (H, W, 10) float32 in s2cloudless's band order, source text). L1C TOA reflectance."""
    width = width or height
    if shared_data_available():
        dn = _read_bands(S2CLOUDLESS_SCENE, S2CLOUDLESS_BANDS)
        dn = mirror_mosaic([dn], height, width)
        source = f"mirror-tiled real 13-band L1C s2cloudless test scene ({S2CLOUDLESS_SCENE}), its 10 model bands"
    else:
        dn = _synthetic_dn(len(S2CLOUDLESS_BANDS), height, width, 1)
        source = "seeded synthetic 10-band scene (shared data folder not found)"
    refl = np.moveaxis(dn, 0, -1).astype(np.float32)
    refl *= np.float32(1e-4)
    return refl, source


def held_out_chips(card: dict, limit: int = None) -> list:
    """[(name, dn (4, H, W) uint16)] of 4-band 10 m chips the card lists for validation or evaluation.

    These are not used in training, so a variant's agreement with the fp32
    model on them is not flattered by memorisation. Falls back to the weak-label
    chips when the card lists none that exist here.
    """
    names = []
    for source in (card.get("training") or {}).get("data", []):
        if source.get("role") in ("validation", "evaluation"):
            names += [n for n in source.get("files", []) if n in FOUR_BAND_CHIPS + WEAK_LABEL_CHIPS
                      or n.startswith(("oncloudn_", "cairo_kaggle_"))]
    names = [n for n in dict.fromkeys(names) if (SHARED_DATA / n).is_file()]
    if not names:
        names = [n for n in WEAK_LABEL_CHIPS if (SHARED_DATA / n).is_file()]
    return [(n, _read_bands(n, FOUR_BANDS)) for n in names[:limit]]


def weak_label_chips() -> list:
    """[(name, dn (4, 512, 512) uint16, cloud (512, 512) bool)] for the chips with a weak cloud label."""
    import xarray as xr

    chips = []
    for name in WEAK_LABEL_CHIPS:
        path = SHARED_DATA / name
        if not path.is_file():
            continue
        with xr.open_dataset(path, mask_and_scale=False) as ds:
            dn = np.asarray(ds["reflectance"].sel(bands=list(FOUR_BANDS)).transpose("bands", "y", "x").values)
            label = np.asarray(ds["label_weak"].transpose("y", "x").values)
        chips.append((name, dn, label == 1))
    return chips
