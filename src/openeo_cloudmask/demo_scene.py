"""The built-in demo scene: a seeded, offline stand-in for a Sentinel-2 L2A tile.

:func:`make_demo_scene` paints, in about a second, a georeferenced
(EPSG:32633, 10 m) 4-band scene (B02, B03, B04, B08 as uint16 digital numbers,
reflectance x 10000) that looks like a summer L2A acquisition over central
Europe: fields in parcels (green crops, ripe cereal, bare soil, grass), forest,
a meandering river and a lake, a town with a street grid and roads. Over it
sit cumulus clouds and a veil of thin cloud, the shadows of both cast away
from the sun, and a nodata strip like an orbit edge. It returns the ground
truth too, as KappaMask codes (1 clear, 2 cloud shadow, 3 semi-transparent
cloud, 4 cloud, 5 missing), so tests can score a mask against it.

Everything is numpy: land-cover texture comes from filtering white noise in
the Fourier domain, so one seed gives the same scene on every machine with
the same numpy. Reflectances are typical published values per land cover.
The clouds and their shadows are not drawn here: the training compositor,
:func:`openeo_cloudmask.synthetic.synthesize`, lays them over
this module's land cover (one piece of code for one job).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from openeo_cloudmask.udf.cloud_mask import CLEAR, CLOUD, MISSING, SEMI, SHADOW  # noqa: F401  (the class table)

BANDS = ("B02", "B03", "B04", "B08")
CRS = "EPSG:32633"
PIXEL_SIZE_M = 10.0
#: Upper-left corner of the demo grid (UTM 33N, near Ljubljana), metres.
ORIGIN = (460000.0, 5110000.0)
DEFAULT_SEED = 0  # chosen for the demo: cumulus with shadows, cirrus streaks, river, town
DEFAULT_SIZE = 1024


# Typical summer surface reflectance (B02, B03, B04, B08) per cover, 0..1.
_COVER = {
    "green_crop": (0.030, 0.065, 0.035, 0.42),
    "maize": (0.028, 0.058, 0.032, 0.48),
    "ripe_cereal": (0.075, 0.110, 0.140, 0.30),
    "bare_soil": (0.085, 0.115, 0.155, 0.22),
    "dark_soil": (0.055, 0.075, 0.095, 0.16),
    "grass": (0.040, 0.075, 0.055, 0.33),
    "stubble": (0.080, 0.110, 0.135, 0.26),
    "forest": (0.022, 0.042, 0.022, 0.27),
    "water": (0.045, 0.055, 0.030, 0.012),
    "river": (0.055, 0.075, 0.060, 0.030),
    "roof_red": (0.080, 0.090, 0.130, 0.20),
    "roof_grey": (0.110, 0.120, 0.125, 0.16),
    "concrete": (0.130, 0.140, 0.145, 0.19),
    "road": (0.095, 0.105, 0.110, 0.15),
}
_CROPS = (("green_crop", 0.30), ("maize", 0.10), ("ripe_cereal", 0.18), ("bare_soil", 0.12),
          ("dark_soil", 0.06), ("grass", 0.16), ("stubble", 0.08))
#: Cloud kinds of the training compositor drawn over the demo scene: lumpy cumulus and thin, streaky cirrus.
CLOUD_KINDS = ("cumulus", "cirrus")
#: Canvas margin (pixels) for the compositor: clouds up to this far outside the scene cast shadows into it.
CLOUD_MARGIN = 64


@dataclasses.dataclass(frozen=True)
class DemoScene:
    """A generated scene: ``dn`` (bands, y, x) uint16, ``labels`` (y, x) uint8 KappaMask codes."""

    dn: np.ndarray
    labels: np.ndarray
    seed: int
    bands: tuple = BANDS
    crs: str = CRS
    pixel_size_m: float = PIXEL_SIZE_M
    origin: tuple = ORIGIN

    @property
    def shape(self) -> tuple:
        return self.labels.shape

    @property
    def transform(self):
        """The affine geotransform (``affine.Affine``, as rasterio uses it)."""
        from affine import Affine

        return Affine(self.pixel_size_m, 0.0, self.origin[0], 0.0, -self.pixel_size_m, self.origin[1])

    def coords(self) -> tuple:
        """Pixel-centre coordinates ``(x, y)`` in metres."""
        height, width = self.shape
        x = self.origin[0] + (np.arange(width) + 0.5) * self.pixel_size_m
        y = self.origin[1] - (np.arange(height) + 0.5) * self.pixel_size_m
        return x, y

    def to_dataarray(self):
        """The scene as the engine takes it: an ``xarray.DataArray`` with dims (bands, y, x)."""
        import xarray as xr

        x, y = self.coords()
        return xr.DataArray(
            self.dn,
            dims=("bands", "y", "x"),
            coords={"bands": list(self.bands), "y": y, "x": x},
            attrs={"crs": self.crs, "title": f"openeo-cloudmask demo scene (seed {self.seed})"},
            name="reflectance",
        )


# --------------------------------------------------------------------------- noise


def smooth_noise(rng: np.random.Generator, shape: tuple, scale_px: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation and features of about ``scale_px``.

    The filter is applied in the Fourier domain, so the field wraps around at
    the edges; cut a larger field when that matters. Broad fields are computed
    on a coarser grid and interpolated, which keeps a 1024 x 1024 scene fast.
    """
    if scale_px <= 2.0:
        return _binomial_noise(rng, shape, scale_px)
    factor = 1
    while scale_px / (2 * factor) >= 3.0 and factor < 16:
        factor *= 2
    small = (-(-shape[0] // factor), -(-shape[1] // factor))
    white = rng.standard_normal(small).astype(np.float32)
    fy = np.fft.fftfreq(small[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(small[1]).astype(np.float32)[None, :]
    sigma = scale_px / factor
    gain = np.exp(-2.0 * math.pi**2 * sigma**2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(white) * gain, s=small).astype(np.float32)
    if factor > 1:
        field = _upsample_periodic(field, shape, factor)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def _binomial_noise(rng, shape, scale_px: float) -> np.ndarray:
    """Fine-grained noise: white noise under repeated [1, 2, 1] / 4 passes (each adds variance 1/2)."""
    field = rng.standard_normal(shape).astype(np.float32)
    for _ in range(max(1, round(2 * scale_px**2))):
        for axis in (0, 1):
            field = 0.5 * field + 0.25 * (np.roll(field, 1, axis) + np.roll(field, -1, axis))
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def _upsample_periodic(field: np.ndarray, shape: tuple, factor: int) -> np.ndarray:
    """Bilinear interpolation of a periodic field onto a grid ``factor`` times finer, cut to ``shape``."""
    out = field
    for axis, length in enumerate(shape):
        pos = (np.arange(length, dtype=np.float32) + 0.5) / factor - 0.5
        lower = np.floor(pos).astype(np.int64)
        frac = (pos - lower).astype(np.float32)
        n = field.shape[axis]
        a, b = np.take(out, lower % n, axis=axis), np.take(out, (lower + 1) % n, axis=axis)
        frac = frac[:, None] if axis == 0 else frac[None, :]
        out = a * (1 - frac) + b * frac
    return out


def fractal_noise(rng, shape, scales, weights=None) -> np.ndarray:
    """Sum of :func:`smooth_noise` octaves, normalised to unit standard deviation."""
    weights = weights or [1.0 / (i + 1) for i in range(len(scales))]
    field = sum(w * smooth_noise(rng, shape, s) for s, w in zip(scales, weights))
    return field / (field.std() + 1e-12)


# --------------------------------------------------------------------------- land cover


def _paint(refl: np.ndarray, where: np.ndarray, cover: str, brightness=1.0) -> None:
    """Set the reflectance of the pixels ``where`` to ``cover``, times a brightness (scalar or per pixel)."""
    values = np.asarray(_COVER[cover], dtype=np.float32)
    if np.ndim(brightness):
        refl[:, where] = values[:, None] * brightness[where][None, :]
    else:
        refl[:, where] = values[:, None] * brightness


def _fields(rng, refl, yy, xx, height, width) -> None:
    """Agricultural parcels: strips of random width, cut into fields of random length, slightly warped."""
    angle = math.radians(rng.uniform(-25, 25))
    warp_u = 4.0 * smooth_noise(rng, (height, width), 60)
    warp_v = 4.0 * smooth_noise(rng, (height, width), 60)
    u = xx * math.cos(angle) + yy * math.sin(angle) + warp_u
    v = -xx * math.sin(angle) + yy * math.cos(angle) + warp_v
    u -= u.min()
    v -= v.min()
    span_u, span_v = float(u.max()) + 1, float(v.max()) + 1
    edges_u = np.cumsum(np.concatenate([[0.0], rng.uniform(25, 80, int(span_u / 25) + 2)]))
    strip = np.searchsorted(edges_u, u, side="right") - 1
    dist_u = np.minimum(u - edges_u[strip], edges_u[strip + 1] - u)
    names = [c for c, _ in _CROPS]
    probs = np.asarray([p for _, p in _CROPS])
    texture = 1.0 + 0.05 * smooth_noise(rng, (height, width), 3) + 0.04 * smooth_noise(rng, (height, width), 15)
    rows = 1.0 + 0.03 * np.sin(2 * math.pi * u / 3.0)  # sowing rows
    dist = np.empty_like(u)
    parcel = np.empty(u.shape, dtype=np.int64)
    for s in range(len(edges_u) - 1):
        in_strip = strip == s
        if not in_strip.any():
            continue
        edges_v = np.cumsum(np.concatenate([[-rng.uniform(0, 120)], rng.uniform(35, 160, int(span_v / 35) + 3)]))
        seg = np.searchsorted(edges_v, v[in_strip], side="right") - 1
        dist[in_strip] = np.minimum(v[in_strip] - edges_v[seg], edges_v[seg + 1] - v[in_strip])
        parcel[in_strip] = s * 10000 + seg
    ids, index = np.unique(parcel, return_inverse=True)
    index = index.reshape(parcel.shape)
    crop_of = rng.choice(len(names), size=len(ids), p=probs)[index]
    gain = rng.uniform(0.85, 1.15, len(ids)).astype(np.float32)[index] * texture
    for k, cover in enumerate(names):
        where = crop_of == k
        rowed = cover in ("green_crop", "maize", "ripe_cereal")
        _paint(refl, where, cover, gain * rows if rowed else gain)
    boundary = np.minimum(dist_u, dist) < 0.9  # tracks and hedges between fields
    hedge = boundary & (smooth_noise(rng, (height, width), 40) > 0.3)
    _paint(refl, boundary & ~hedge, "stubble", 0.9)
    _paint(refl, hedge, "forest", 1.1)


def _forest(rng, refl, height, width) -> np.ndarray:
    cover = fractal_noise(rng, (height, width), [90, 30, 8]) + 0.6 * smooth_noise(rng, (height, width), 250)
    forest = cover > 0.9
    canopy = 1.0 + 0.18 * smooth_noise(rng, (height, width), 1.2) + 0.08 * smooth_noise(rng, (height, width), 6)
    _paint(refl, forest, "forest", canopy)
    return forest


def _water(rng, refl, yy, xx, height, width) -> None:
    """A meandering river across the scene, trees along its banks, and a lake."""
    angle = math.radians(rng.uniform(-35, 35))
    along = xx * math.cos(angle) + yy * math.sin(angle)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    phase = rng.uniform(0, 2 * math.pi, 3)
    centre = (height * rng.uniform(0.35, 0.65)
              + 40 * np.sin(along / 110 + phase[0]) + 18 * np.sin(along / 37 + phase[1])
              + 12 * smooth_noise(rng, (height, width), 80))
    offset = np.abs(across - centre)
    width_px = 4.5 + 1.5 * np.sin(along / 200 + phase[2])
    _paint(refl, (offset < width_px + 6) & (offset >= width_px), "forest", 1.0 + 0.15 * smooth_noise(rng, (height, width), 1.5))
    _paint(refl, offset < width_px, "river", 1.0 + 0.05 * smooth_noise(rng, (height, width), 10))
    cy, cx = rng.uniform(0.15, 0.85, 2) * (height, width)
    radius = rng.uniform(25, 45) * (1 + 0.25 * smooth_noise(rng, (height, width), 25))
    lake = np.hypot((yy - cy) / 0.7, xx - cx) < radius
    _paint(refl, lake, "water", 1.0 + 0.04 * smooth_noise(rng, (height, width), 20))


def _town(rng, refl, yy, xx, height, width) -> None:
    """A town: blocks of roofs between streets, a few gardens, and roads leading out."""
    cy, cx = rng.uniform(0.25, 0.75, 2) * (height, width)
    radius = min(height, width) * rng.uniform(0.09, 0.13)
    blob = np.hypot(yy - cy, xx - cx) < radius * (1 + 0.35 * smooth_noise(rng, (height, width), 30))
    angle = math.radians(rng.uniform(0, 90))
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    street = (np.mod(u, 16) < 1.5) | (np.mod(v, 22) < 1.5)
    inside = blob & ~street
    # One building or garden per ~40 x 50 m lot, drawn at random per lot.
    lot = (np.floor(u[inside] / 4).astype(np.int64) * 100003 + np.floor(v[inside] / 5).astype(np.int64))
    lots, which = np.unique(lot, return_inverse=True)
    kinds = ("roof_red", "roof_grey", "concrete", "grass")
    kind_of = rng.choice(len(kinds), size=len(lots), p=[0.3, 0.4, 0.1, 0.2])[which]
    speckle = 1.0 + 0.07 * smooth_noise(rng, (height, width), 0.8)
    for k, kind in enumerate(kinds):
        where = np.zeros((height, width), dtype=bool)
        where[inside] = kind_of == k
        _paint(refl, where, kind, speckle)
    _paint(refl, blob & street, "road", 1.0)
    for _ in range(3):  # roads from the town to the edge of the scene
        theta = rng.uniform(0, 2 * math.pi)
        dist = np.abs((xx - cx) * math.sin(theta) - (yy - cy) * math.cos(theta))
        ahead = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta) > 0
        _paint(refl, (dist < 1.0) & ahead & ~blob, "road", 1.0)


def _orbit_edge(rng, height, width) -> np.ndarray:
    """Nodata beyond a slanted line near the right edge, as at the edge of a Sentinel-2 swath."""
    yy, xx = np.mgrid[0:height, 0:width]
    top, bottom = rng.uniform(0.80, 0.86) * width, rng.uniform(1.0, 1.1) * width
    return xx > top + (bottom - top) * yy / height


# --------------------------------------------------------------------------- the scene


def paint_land_cover(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cloud-free surface reflectance (4, size, size): fields, forest, river and lake, a town."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    refl = np.zeros((4, size, size), dtype=np.float32)
    _fields(rng, refl, yy, xx, size, size)
    _forest(rng, refl, size, size)
    _water(rng, refl, yy, xx, size, size)
    _town(rng, refl, yy, xx, size, size)
    return refl


def make_demo_scene(seed: int = DEFAULT_SEED, size: int = DEFAULT_SIZE) -> DemoScene:
    """Generate the demo scene: ``size`` x ``size`` pixels, the same for the same ``seed``.

    The land cover is painted here; clouds, semi-transparent clouds and their
    shadows come from the training compositor
    (:func:`openeo_cloudmask.synthetic.synthesize`), so the demo
    and the training data share one definition of each class. The orbit edge
    is added afterwards, a slanted strip rather than the compositor's random
    5-50 % border, so the scene stays mostly usable.
    """
    from openeo_cloudmask.synthetic import synthesize

    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    rng = np.random.default_rng(seed)
    ground = paint_land_cover(rng, int(size))
    options = {"kinds": list(CLOUD_KINDS), "nodata": False, "pixel_m": PIXEL_SIZE_M}
    dn, labels = synthesize(ground, rng, margin=CLOUD_MARGIN, options=options)
    dn = np.clip(np.round(dn), 1, 65534).astype(np.uint16)
    nodata = _orbit_edge(rng, int(size), int(size))
    dn[:, nodata] = 0
    labels = labels.astype(np.uint8)
    labels[nodata] = MISSING
    return DemoScene(dn=dn, labels=labels, seed=seed)
