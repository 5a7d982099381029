"""Synthetic clouds, semi-transparent clouds and shadows on clear-sky backgrounds, with exact labels.

Everything here is numpy only (the tests run it without torch). One call,
:func:`synthesize`, turns a clear background (reflectance, (4, H, W), B02 B03
B04 B08) into a cloudy image and its exact label (codes 1..5):

* **Optical thickness** fields tau >= 0 come from multi-scale (power-law,
  "fractal") noise: ``cumulus`` (lumpy, thick), ``stratus`` (wide, smooth),
  ``fragmented`` (small broken cumuli), ``cirrus`` (thin, stretched streaks)
  and ``haze`` (very smooth, thin). One to three layers are stacked.
* **Cloud reflectance**: a conservatively scattering layer of albedo
  A = tau / (tau + 6.5) over a Lambertian surface r gives
  R = A + (1 - A)^2 r / (1 - A r) (the adding formula). A is scaled per band
  (clouds are nearly grey), so thin cloud is partial transmission, not a white
  paint. A textured "brightness"
  (0.4-1.05) adds cloud-top relief; it scales A itself, so shade also lets
  more surface light through.
* **Labels**: cloud (4) where A >= 0.4, semi-transparent (3) where the
  layer is visible but the surface still shows through: A < 0.4 and A at
  least 0.07, or, over dark surfaces, at least 0.6 x the surface's mean
  reflectance (never below 0.02). Visibility is contrast: a layer of
  A = 0.03 doubles the brightness of open water and is plain to see, while
  over bright land it is lost in the surface's own texture. Below that clear.
  A layer must also change the mean reflectance by at least 5 % of the
  surface's (``VISIBLE_CHANGE``): over fresh snow even thick cloud hardly
  does, and a pixel that looks like snow is labelled as the surface below.
  A pixel with A >= 0.4 (``cloud_albedo``) is opaque. This is the real-scene
  rule of the model card (models/training/labels.py) seen from the generator:
  over vegetation a layer flattens B08 / B04 to the rule's opaque bound 1.25
  at A = 0.43 (0.4 leaves 1.30, inside the rule's "either" band), and its red
  edge shows (> 1.5, the rule's semi-transparent) below A = 0.3. Up to v2.0.0
  the line was A = 0.5, so layers of A 0.43-0.5 were semi-transparent here and
  opaque on real scenes (EXPERIMENTS.md, "one opaque definition").
* **Shadows**: the thickness field is shifted along the sun azimuth by
  cloud height / tan(sun elevation); only clouds inside the crop cast
  shadows (a shadow never comes without its cloud in view), at most
  ``shadow_max_px`` long. The surface keeps a band-dependent diffuse-light
  floor d (blue most, NIR least): r' = r (d + (1 - d) exp(-tau_shifted)).
  Label shadow (2) where the NIR darkening 1 - r'/r >= 0.35 and no cloud is on top.
* **Surfaces**: procedural backgrounds mix typical spectra; a share of them
  (``snow_probability``) is a snow and ice landscape (fresh and old snow,
  bare and ponded ice, snow in shade, open water, rock), with clouds and
  shadows over it like any other: bright is not cloud.
* **Nodata**: with some probability a straight orbit-edge-like border sets all
  bands to 0 and the label to 5.
* **Sensor/processing variety**: per-band gain and offset jitter, an L1C-like
  path-radiance offset (Rayleigh-shaped), Gaussian noise, 10 m or 20-30 m
  pixels (the caller downsamples the background, see ``scale``).
"""

from __future__ import annotations

import numpy as np

from openeo_cloudmask.udf.cloud_mask import CLEAR, CLOUD, MISSING, SEMI, SHADOW  # noqa: F401  (the class table)

CLOUD_ALBEDO = 0.4
SEMI_ALBEDO = 0.07
#: Over dark surfaces a thinner layer is visible: semi-transparent from SEMI_CONTRAST x the mean surface
#: reflectance (Weber contrast), never below SEMI_ALBEDO_MIN (about twice the sensor noise).
SEMI_CONTRAST = 0.6
SEMI_ALBEDO_MIN = 0.02
SHADOW_DARKENING = 0.35
#: A layer is labelled only where it changes the mean reflectance by at least this share of the surface's.
VISIBLE_CHANGE = 0.05
#: Share of synthetic scenes given an L1C-like path radiance (top-of-atmosphere look).
PATH_RADIANCE_PROBABILITY = 0.35
ALBEDO_TAU = 6.5
#: Range of a cloud layer's B08 albedo relative to its B02 (a uniform draw per scene; the visible bands get 1.0, 0.99
#: and 0.98). Real clouds are nearly grey; see ``cloud_nir_tint`` in :func:`synthesize`.
CLOUD_NIR_TINT = (0.9, 1.0)
#: Share of procedural backgrounds dominated by one surface type.
DOMINANT_COVER_PROBABILITY = 0.3
CLOUD_KINDS = ("cumulus", "stratus", "fragmented", "cirrus", "haze")
#: The longest synthetic shadow, in pixels, when no ``shadow_max_px`` is given.
SHADOW_MAX_PX = 64

#: Typical surface reflectance spectra (B02, B03, B04, B08) for procedural backgrounds.
SURFACE_SPECTRA = {
    "vegetation": (0.03, 0.06, 0.04, 0.33),
    "dry_vegetation": (0.05, 0.08, 0.09, 0.25),
    "soil": (0.09, 0.13, 0.17, 0.25),
    "desert": (0.17, 0.24, 0.31, 0.37),
    "water": (0.05, 0.05, 0.03, 0.01),
    "urban": (0.11, 0.12, 0.13, 0.18),
}
#: Snow and ice (B02, B03, B04, B08), from published spectra (fresh snow flat and bright; older, coarser snow and
#: bare ice darker in the NIR; melt ponds blue and dark in the NIR; snow in shade lit by the blue sky only). Sea ice
#: in the shared data: B08 / B04 0.40-0.87, B02 / B04 1.06-2.03 (5-95 %).
SNOW_SPECTRA = {
    "fresh_snow": (0.95, 0.94, 0.92, 0.84),
    "old_snow": (0.80, 0.78, 0.74, 0.58),
    "bare_ice": (0.62, 0.57, 0.50, 0.33),
    "ponded_ice": (0.42, 0.36, 0.24, 0.10),
    "snow_in_shade": (0.40, 0.33, 0.28, 0.22),
    "open_water": (0.06, 0.05, 0.03, 0.01),
    "rock": (0.10, 0.11, 0.12, 0.15),
}


def fractal_noise(rng: np.random.Generator, shape: tuple, beta: float, stretch: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum ~ 1/f^beta; ``stretch`` > 1 elongates along ``angle``."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    c, s = np.cos(angle), np.sin(angle)
    along = fx * c + fy * s
    across = -fx * s + fy * c
    f = np.sqrt((along * stretch) ** 2 + across**2)
    f[0, 0] = 1.0
    amplitude = f ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = (rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)) * amplitude
    field = np.fft.irfft2(spectrum, s=(h, w))
    field -= field.mean()
    return (field / (field.std() + 1e-12)).astype(np.float32)


def cloud_layer(rng: np.random.Generator, shape: tuple, kind: str) -> np.ndarray:
    """Optical thickness tau (H, W) of one cloud layer of a given kind."""
    if kind == "cumulus":
        beta, cover, tau_max, stretch = rng.uniform(2.8, 3.6), rng.uniform(0.1, 0.55), rng.uniform(15, 60), 1.0
    elif kind == "stratus":
        beta, cover, tau_max, stretch = rng.uniform(3.4, 4.2), rng.uniform(0.3, 0.9), rng.uniform(5, 40), 1.0
    elif kind == "fragmented":
        beta, cover, tau_max, stretch = rng.uniform(2.0, 2.7), rng.uniform(0.05, 0.35), rng.uniform(4, 30), 1.0
    elif kind == "cirrus":
        beta, cover, tau_max, stretch = rng.uniform(2.6, 3.6), rng.uniform(0.2, 0.8), rng.uniform(0.6, 6), rng.uniform(2, 8)
    elif kind == "haze":
        beta, cover, tau_max, stretch = rng.uniform(3.8, 4.6), rng.uniform(0.4, 1.0), rng.uniform(0.3, 3), 1.0
    else:
        raise ValueError(f"unknown cloud kind {kind!r}; use one of {CLOUD_KINDS}")
    noise = fractal_noise(rng, shape, beta, stretch, rng.uniform(0, np.pi))
    threshold = np.quantile(noise, 1.0 - cover)
    excess = np.clip(noise - threshold, 0.0, None)
    top = np.quantile(excess[excess > 0], 0.95) if np.any(excess > 0) else 1.0
    # a soft-edged profile: thickness grows as a power of the excess above the threshold
    sharpness = rng.uniform(0.6, 1.6)
    return (tau_max * np.clip(excess / (top + 1e-6), 0.0, 1.5) ** sharpness).astype(np.float32)


def procedural_background(rng: np.random.Generator, size: int, snow_probability: float = 0.0) -> np.ndarray:
    """A cloud-free surface (4, size, size) in reflectance: fractal mixtures of typical spectra.

    With ``snow_probability`` the landscape is one of snow and ice (:data:`SNOW_SPECTRA`) instead.
    """
    palette = SNOW_SPECTRA if rng.random() < snow_probability else SURFACE_SPECTRA
    names = list(palette)
    chosen = rng.choice(len(names), size=rng.integers(2, 5), replace=False)
    logits = np.stack([fractal_noise(rng, (size, size), rng.uniform(2.0, 3.5)) * rng.uniform(2, 6) for _ in chosen])
    if rng.random() < DOMINANT_COVER_PROBABILITY:  # a landscape mostly of one cover: open sea, desert, forest
        logits[rng.integers(len(chosen))] += rng.uniform(3.0, 8.0)
    weights = np.exp(logits - logits.max(axis=0))
    weights /= weights.sum(axis=0)
    spectra = np.array([palette[names[i]] for i in chosen], dtype=np.float32)
    surface = np.einsum("kb,khw->bhw", spectra * rng.uniform(0.8, 1.2, spectra.shape), weights)
    texture = 1.0 + 0.15 * fractal_noise(rng, (size, size), 1.5)
    return np.clip(surface * texture, 0.001, 1.0).astype(np.float32)


def semi_threshold(
    surface: np.ndarray, semi_albedo: float = SEMI_ALBEDO, contrast: float = SEMI_CONTRAST, floor: float = SEMI_ALBEDO_MIN
) -> np.ndarray:
    """Per-pixel cloud albedo from which a layer over ``surface`` (4, H, W) reflectance is labelled visible."""
    return np.clip(contrast * surface.mean(axis=0), min(floor, semi_albedo), semi_albedo)


def nodata_border(rng: np.random.Generator, size: int) -> np.ndarray:
    """Boolean mask of a straight, orbit-edge-like nodata border covering 5-50 % of the crop."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    distance = xx * np.cos(angle) + yy * np.sin(angle)
    return distance > np.quantile(distance, 1.0 - rng.uniform(0.05, 0.5))


def synthesize(background: np.ndarray, rng: np.random.Generator, margin: int = 64, options: dict | None = None):
    """Composite clouds and shadows onto ``background`` (4, S, S) reflectance; returns (dn float32, label uint8).

    ``margin``: the cloud field is drawn on a canvas this much larger on every side (its clouds outside the crop
    cast no shadow into it). ``options`` can force ``kinds`` (list of cloud kinds; ``[]`` gives a cloud-free crop), ``nodata`` (bool),
    ``shadow_px`` (shadow distance) for tests, and set ``pixel_m`` (the pixel size, for shadow lengths),
    ``shadow_max_px`` (the longest shadow), the semi-transparent threshold (:func:`semi_threshold`):
    ``semi_albedo``, ``semi_contrast`` and ``semi_albedo_min``, the opaque threshold ``cloud_albedo``,
    ``cloud_nir_tint`` (the (low, high) range of a layer's B08 albedo relative to its B02) and
    ``path_radiance_probability`` (the share given an L1C look).
    """
    options = options or {}
    _, size, _ = background.shape
    canvas = size + 2 * margin
    n_layers = int(rng.choice([1, 1, 2, 2, 3]))
    kinds = options.get("kinds")
    if kinds is None:
        kinds = list(rng.choice(CLOUD_KINDS, size=n_layers, p=[0.3, 0.15, 0.2, 0.2, 0.15]))

    # per layer: thickness on the canvas and its shadow shift (cloud height / tan(sun elevation)); only clouds
    # inside the crop cast shadows, so a shadow always has its cloud in view
    azimuth = rng.uniform(0, 2 * np.pi)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    longest = options.get("shadow_max_px", SHADOW_MAX_PX)
    tau = np.zeros((canvas, canvas), np.float32)
    tau_shadow = np.zeros((canvas, canvas), np.float32)
    for kind in kinds:
        layer = cloud_layer(rng, (canvas, canvas), kind)
        if "shadow_px" in options:
            distance = options["shadow_px"]
        else:
            height_m = rng.uniform(500, 9000) if kind not in ("cirrus", "haze") else rng.uniform(6000, 11000)
            elevation = np.deg2rad(rng.uniform(15, 75))
            distance = min(height_m / np.tan(elevation) / options.get("pixel_m", 10.0), longest)
        dy, dx = int(round(distance * np.sin(azimuth))), int(round(distance * np.cos(azimuth)))
        tau += layer
        caster = np.zeros_like(layer)
        caster[crop] = layer[crop]
        tau_shadow += shift(caster, dy, dx)
    tau, tau_shadow = tau[crop], tau_shadow[crop]

    # shadow: direct light blocked, a band-dependent diffuse floor (bluer in shadow)
    diffuse = np.array([rng.uniform(0.3, 0.5), rng.uniform(0.22, 0.4), rng.uniform(0.17, 0.33), rng.uniform(0.08, 0.25)], np.float32)
    direct = np.exp(-tau_shadow)[None]
    floor = diffuse[:, None, None]
    surface = background * (floor + (1 - floor) * direct)
    darkening_nir = 1.0 - (floor[3] + (1 - floor[3]) * direct[0])

    # cloud: adding formula with a textured, nearly grey albedo
    albedo = tau / (tau + ALBEDO_TAU)
    brightness = np.clip(rng.uniform(0.75, 1.0) + 0.12 * fractal_noise(rng, (size, size), 2.5), 0.4, 1.05)
    nir_tint = rng.uniform(*options.get("cloud_nir_tint", CLOUD_NIR_TINT))
    tint = np.array([1.0, 0.99, 0.98, nir_tint], np.float32) * rng.uniform(0.97, 1.03, 4).astype(np.float32)
    a_band = np.clip(albedo[None] * brightness[None] * tint[:, None, None], 0.0, 0.98)
    image = a_band + (1 - a_band) ** 2 * surface / (1 - a_band * surface)

    label = np.full((size, size), CLEAR, np.uint8)
    label[(darkening_nir >= SHADOW_DARKENING)] = SHADOW
    visible = semi_threshold(
        surface,
        options.get("semi_albedo", SEMI_ALBEDO),
        options.get("semi_contrast", SEMI_CONTRAST),
        options.get("semi_albedo_min", SEMI_ALBEDO_MIN),
    )
    # a layer must also change what the sensor sees: over fresh snow even a thick cloud hardly does, and a pixel that
    # looks like the surface is labelled as the surface
    change = np.abs(image - surface).mean(axis=0) >= VISIBLE_CHANGE * surface.mean(axis=0)
    label[(albedo >= visible) & change] = SEMI
    label[(albedo >= options.get("cloud_albedo", CLOUD_ALBEDO)) & change] = CLOUD

    # sensor and processing variety
    if rng.random() < options.get("path_radiance_probability", PATH_RADIANCE_PROBABILITY):  # L1C-like, Rayleigh-shaped
        image = image + rng.uniform(0.02, 0.09) * np.array([1.0, 0.62, 0.38, 0.1], np.float32)[:, None, None]
    image = image * rng.uniform(0.93, 1.07, (4, 1, 1)) + rng.uniform(-0.006, 0.006, (4, 1, 1))
    image = image + rng.normal(0, rng.uniform(0.0, 0.004), image.shape)
    dn = np.clip(np.round(image * 10000.0), 1.0, 30000.0).astype(np.float32)

    nodata = options.get("nodata", rng.random() < 0.15)
    if nodata:
        border = nodata_border(rng, size)
        dn[:, border] = 0.0
        label[border] = MISSING
    return dn, label


def shift(field: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``field`` moved by (dy, dx) pixels, zero where nothing moves in (np.roll without the wrap-around)."""
    out = np.zeros_like(field)
    h, w = field.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = field[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of (C, H, W) by an integer factor (H, W multiples of it): 10 m -> 20/30 m pixels."""
    if factor == 1:
        return image
    c, h, w = image.shape
    return image.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def demo_scene(seed: int = 0, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, fully procedural example holding all five classes (for tests and docs)."""
    rng = np.random.default_rng(seed)
    background = procedural_background(rng, size)
    return synthesize(background, rng, margin=32, options={"kinds": ["cumulus", "cirrus"], "nodata": True, "shadow_px": 20})
