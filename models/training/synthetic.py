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
  (clouds are nearly grey, thin ice cloud slightly bluer), so thin cloud is
  partial transmission, not a white paint. A textured "brightness" (0.4-1.05)
  adds cloud-top relief: ``relief="reflectance"`` shades only the reflected
  term, so a shaded cloud is darker but as opaque as its optical thickness
  says; the default ``"albedo"`` (v1.2.0 and the evaluation's test set)
  scales A itself, so shade also lets more surface light through and part
  of the "cloud" truth renders like semi-transparent cloud.
* **Labels**: cloud (4) where A >= 0.5, semi-transparent (3) where the
  layer is visible but the surface still shows through: A < 0.5 and A at
  least 0.07, or, over dark surfaces, at least 0.6 x the surface's mean
  reflectance (never below 0.02). Visibility is contrast: a layer of
  A = 0.03 doubles the brightness of open water and is plain to see, while
  over bright land it is lost in the surface's own texture. Below that clear.
  For training, :func:`synthesize_sets` can also return set labels that allow
  both classes within a relative tolerance of the clear/semi-transparent and
  clear/shadow thresholds, where the convention, not the physics, decides.
* **Shadows**: the thickness field is shifted along the sun azimuth by
  cloud height / tan(sun elevation), clamped to the crop's margin. With
  ``offcrop_shadows=False`` only clouds inside the crop cast shadows (a
  shadow never comes without its cloud in view), clamped to ``shadow_max_px``. The surface
  keeps a band-dependent diffuse-light floor d (blue most, NIR least):
  r' = r (d + (1 - d) T), T = exp(-tau_shifted) (the direct beam, the default) or, with
  ``shadow_transmission="total"``, T = 1 - A(tau_shifted) (direct + forward-scattered light). Label shadow (2) where the NIR
  darkening 1 - r'/r >= 0.35 and no cloud is on top. Over water (NDWI from
  0 to 0.3) ``water_diffuse`` raises the floor towards 1: there much of the
  signal is skylight, which the shadow does not block.
* **Nodata**: with some probability a straight orbit-edge-like border sets all
  bands to 0 and the label to 5.
* **Sensor/processing variety**: per-band gain and offset jitter, an L1C-like
  path-radiance offset (Rayleigh-shaped), Gaussian noise, 10 m or 20-30 m
  pixels (the caller downsamples the background, see ``scale``).
"""

from __future__ import annotations

import numpy as np

CLEAR, SHADOW, SEMI, CLOUD, MISSING = 1, 2, 3, 4, 5
CLOUD_ALBEDO = 0.5
SEMI_ALBEDO = 0.07
#: Over dark surfaces a thinner layer is visible: semi-transparent from SEMI_CONTRAST x the mean surface
#: reflectance (Weber contrast), never below SEMI_ALBEDO_MIN (about twice the sensor noise).
SEMI_CONTRAST = 0.6
SEMI_ALBEDO_MIN = 0.02
SHADOW_DARKENING = 0.35
#: Share of synthetic scenes given an L1C-like path radiance (top-of-atmosphere look).
PATH_RADIANCE_PROBABILITY = 0.35
ALBEDO_TAU = 6.5
#: NDWI (B03 - B08) / (B03 + B08) from which a surface counts as open water (for ``water_diffuse``).
WATER_NDWI = 0.3
#: Share of procedural backgrounds dominated by one surface type.
DOMINANT_COVER_PROBABILITY = 0.3
CLOUD_KINDS = ("cumulus", "stratus", "fragmented", "cirrus", "haze")
RELIEF_MODES = ("albedo", "reflectance")
#: Light reaching a shadowed surface through the cloud: "direct" exp(-tau) (thin haze and cirrus then cast
#: dark shadows) or "total" 1 - A = 6.5 / (tau + 6.5), the conservative layer's transmission (direct + forward
#: scattered), so only moderately thick cloud (tau >~ 5) darkens NIR by SHADOW_DARKENING.
SHADOW_TRANSMISSIONS = ("direct", "total")

#: Typical surface reflectance spectra (B02, B03, B04, B08) for procedural backgrounds.
SURFACE_SPECTRA = {
    "vegetation": (0.03, 0.06, 0.04, 0.33),
    "dry_vegetation": (0.05, 0.08, 0.09, 0.25),
    "soil": (0.09, 0.13, 0.17, 0.25),
    "desert": (0.17, 0.24, 0.31, 0.37),
    "water": (0.05, 0.05, 0.03, 0.01),
    "urban": (0.11, 0.12, 0.13, 0.18),
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


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cloud-free surface (4, size, size) in reflectance: fractal mixtures of typical spectra."""
    names = list(SURFACE_SPECTRA)
    chosen = rng.choice(len(names), size=rng.integers(2, 5), replace=False)
    logits = np.stack([fractal_noise(rng, (size, size), rng.uniform(2.0, 3.5)) * rng.uniform(2, 6) for _ in chosen])
    if rng.random() < DOMINANT_COVER_PROBABILITY:  # a landscape mostly of one cover: open sea, desert, forest
        logits[rng.integers(len(chosen))] += rng.uniform(3.0, 8.0)
    weights = np.exp(logits - logits.max(axis=0))
    weights /= weights.sum(axis=0)
    spectra = np.array([SURFACE_SPECTRA[names[i]] for i in chosen], dtype=np.float32)
    surface = np.einsum("kb,khw->bhw", spectra * rng.uniform(0.8, 1.2, spectra.shape), weights)
    texture = 1.0 + 0.15 * fractal_noise(rng, (size, size), 1.5)
    return np.clip(surface * texture, 0.001, 1.0).astype(np.float32)


def sea_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Open water (4, size, size) in reflectance, sometimes with a coast: the dark, flat surface thin haze hides on.

    Clear to turbid water: B02 0.03-0.08, each longer band a fraction of the one before (turbidity and
    glint lift red and NIR), smooth plumes (+-10 %) and faint wave texture (+-2 %). In 30 % of draws a
    procedural land surface fills the part of the crop beyond a fractal coastline.
    """
    blue = rng.uniform(0.03, 0.08)
    green = blue * rng.uniform(0.6, 1.0)
    red = green * rng.uniform(0.4, 0.9)
    nir = red * rng.uniform(0.3, 1.0)
    spectrum = np.array([blue, green, red, nir], np.float32)[:, None, None]
    plumes = 1.0 + 0.10 * fractal_noise(rng, (size, size), rng.uniform(3.5, 4.5))
    waves = 1.0 + 0.02 * fractal_noise(rng, (size, size), rng.uniform(1.0, 2.0))
    water = spectrum * (plumes * waves)[None]
    if rng.random() < 0.3:
        land = fractal_noise(rng, (size, size), rng.uniform(3.0, 4.0)) > rng.uniform(0.0, 1.5)
        water = np.where(land[None], procedural_background(rng, size), water)
    return np.clip(water, 0.001, 1.0).astype(np.float32)


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

    ``margin``: the cloud field is drawn on a canvas this much larger on every
    side, so shadows can come from clouds outside the crop (and clouds can have
    shadows outside it). ``options`` can force ``kinds`` (list of cloud kinds),
    ``nodata`` (bool), ``shadow_px`` (shadow distance) for tests, and the semi-transparent threshold
    (:func:`semi_threshold`): ``semi_albedo`` (the albedo from which a layer over a bright surface counts),
    ``semi_contrast`` and ``semi_albedo_min`` (over dark surfaces); and, for training experiments,
    ``offcrop_shadows`` / ``shadow_max_px`` (which clouds cast shadows, and how far), ``water_diffuse``
    (skylight in shadows over water), ``path_radiance_probability`` (the share given an L1C look),
    ``layer_shading`` (one sun elevation per scene; higher layers shade lower ones, :func:`_shaded_layers`) and
    ``shadow_transmission`` (``SHADOW_TRANSMISSIONS``).
    """
    dn, label, _ = synthesize_sets(background, rng, margin, options)
    return dn, label


def synthesize_sets(background: np.ndarray, rng: np.random.Generator, margin: int = 64, options: dict | None = None):
    """:func:`synthesize` (same draws, same image, same label), plus set labels (5, S, S) bool over codes 1..5.

    Where a pixel lies near a visibility threshold, the set also holds the class on the
    other side: a layer whose albedo is within ``options["layer_tolerance"]`` (relative,
    default 0) of the semi-transparent threshold may be clear or semi-transparent, and a
    shadow whose NIR darkening is within ``options["shadow_tolerance"]`` of
    SHADOW_DARKENING may be clear or shadow. Whether faint haze or a faint shadow "counts" is a convention,
    not physics; the loss then leaves the choice to the real-image teacher. The
    semi/cloud boundary stays exact.
    """
    options = options or {}
    _, size, _ = background.shape
    canvas = size + 2 * margin
    n_layers = int(rng.choice([1, 1, 2, 2, 3]))
    kinds = options.get("kinds") or list(rng.choice(CLOUD_KINDS, size=n_layers, p=[0.3, 0.15, 0.2, 0.2, 0.15]))

    # per layer: thickness on the canvas and its shadow shift (cloud height / tan(sun elevation))
    azimuth = rng.uniform(0, 2 * np.pi)
    crop = (slice(margin, margin + size), slice(margin, margin + size))
    # with offcrop_shadows False only clouds inside the crop cast shadows: a shadow always has its cloud in view
    offcrop_shadows = options.get("offcrop_shadows", True)
    # the longest shadow, in pixels: the margin when off-crop clouds cast (np.roll must not wrap into the crop)
    longest = margin if offcrop_shadows else options.get("shadow_max_px", margin)
    # layer_shading: one sun elevation for the scene, and higher layers shade lower ones (see _shaded_layers)
    layer_shading = options.get("layer_shading", False)
    scene_elevation = np.deg2rad(rng.uniform(15, 75)) if layer_shading else None
    tau = np.zeros((canvas, canvas), np.float32)
    tau_shadow = np.zeros((canvas, canvas), np.float32)
    layers = []  # (unclamped shadow length, casting field on the canvas, thickness in the crop), for layer_shading
    for kind in kinds:
        layer = cloud_layer(rng, (canvas, canvas), kind)
        if "shadow_px" in options:
            distance = reach = options["shadow_px"]
        else:
            height_m = rng.uniform(500, 9000) if kind not in ("cirrus", "haze") else rng.uniform(6000, 11000)
            elevation = scene_elevation if layer_shading else np.deg2rad(rng.uniform(15, 75))
            pixel_m = options.get("pixel_m", 10.0)
            reach = height_m / np.tan(elevation) / pixel_m  # the shadow's true length in pixels
            distance = min(reach, longest)
        dy, dx = int(round(distance * np.sin(azimuth))), int(round(distance * np.cos(azimuth)))
        tau += layer
        if offcrop_shadows:
            caster = layer
            tau_shadow += np.roll(layer, (dy, dx), axis=(0, 1))
        else:
            caster = np.zeros_like(layer)
            caster[crop] = layer[crop]
            tau_shadow += shift(caster, dy, dx)
        layers.append((reach, caster, layer[crop]))
    tau, tau_shadow = tau[crop], tau_shadow[crop]

    # shadow: direct light blocked, a band-dependent diffuse floor (bluer in shadow)
    diffuse = np.array([rng.uniform(0.3, 0.5), rng.uniform(0.22, 0.4), rng.uniform(0.17, 0.33), rng.uniform(0.08, 0.25)], np.float32)
    transmission = options.get("shadow_transmission", "direct")
    if transmission not in SHADOW_TRANSMISSIONS:
        raise ValueError(f"unknown shadow_transmission {transmission!r}; use one of {SHADOW_TRANSMISSIONS}")
    if transmission == "direct":  # v1.3.0: only the unscattered beam exp(-tau) gets through
        direct = np.exp(-tau_shadow)[None]
    else:  # "total": direct plus forward-scattered light, 1 - A, as the adding formula's layer transmits
        direct = (ALBEDO_TAU / (tau_shadow + ALBEDO_TAU))[None]
    floor = np.broadcast_to(diffuse[:, None, None], background.shape)
    water_diffuse = options.get("water_diffuse", 0.0)
    if water_diffuse > 0:  # over water much of the signal is skylight, which a cloud's shadow does not block
        ndwi = (background[1] - background[3]) / (background[1] + background[3] + 1e-6)
        wet = np.clip(ndwi / WATER_NDWI, 0.0, 1.0)[None]
        floor = floor + (1 - floor) * water_diffuse * wet
    surface = background * (floor + (1 - floor) * direct)
    darkening_nir = 1.0 - (floor[3] + (1 - floor[3]) * direct[0])

    # cloud: adding formula with a textured, nearly grey albedo
    albedo = tau / (tau + ALBEDO_TAU)
    brightness = np.clip(rng.uniform(0.75, 1.0) + 0.12 * fractal_noise(rng, (size, size), 2.5), 0.4, 1.05)
    tint = np.array([1.0, 0.99, 0.98, rng.uniform(0.9, 1.0)], np.float32) * rng.uniform(0.97, 1.03, 4).astype(np.float32)
    relief = options.get("relief", "albedo")
    if relief not in RELIEF_MODES:
        raise ValueError(f"unknown relief {relief!r}; use one of {RELIEF_MODES}")
    if layer_shading:
        image = _shaded_layers(surface, layers, azimuth, crop, diffuse, brightness, tint, relief)
    else:
        image = _add_layer(surface, albedo, brightness, tint, relief)

    label = np.full((size, size), CLEAR, np.uint8)
    label[(darkening_nir >= SHADOW_DARKENING)] = SHADOW
    under = label.copy()  # what the pixel is without the cloud on top (clear or shadow)
    visible = semi_threshold(
        surface,
        options.get("semi_albedo", SEMI_ALBEDO),
        options.get("semi_contrast", SEMI_CONTRAST),
        options.get("semi_albedo_min", SEMI_ALBEDO_MIN),
    )
    label[albedo >= visible] = SEMI
    label[albedo >= CLOUD_ALBEDO] = CLOUD

    sets = np.stack([label == code for code in range(1, 6)])
    tolerance = options.get("layer_tolerance", 0.0)
    if tolerance > 0:
        borderline_layer = (albedo >= visible * (1 - tolerance)) & (albedo < visible * (1 + tolerance)) & (label != CLOUD)
        sets[SEMI - 1] |= borderline_layer
        for code in (CLEAR, SHADOW):
            sets[code - 1] |= borderline_layer & (under == code)
    tolerance = options.get("shadow_tolerance", 0.0)
    if tolerance > 0:
        borderline_shadow = (np.abs(darkening_nir - SHADOW_DARKENING) < SHADOW_DARKENING * tolerance) & (label == under)
        sets[CLEAR - 1] |= borderline_shadow
        sets[SHADOW - 1] |= borderline_shadow

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
        sets[:, border] = False
        sets[MISSING - 1, border] = True
    return dn, label, sets


def _add_layer(below: np.ndarray, albedo: np.ndarray, brightness: np.ndarray, tint: np.ndarray, relief: str, lit=1.0) -> np.ndarray:
    """A cloud layer of ``albedo`` (H, W) over reflectance ``below`` (4, H, W), by the adding formula.

    ``relief`` "albedo" (v1.2.0): the textured brightness scales the albedo, so shade also transmits;
    "reflectance": it scales only the reflected light, and transmission follows the optical thickness.
    ``lit`` scales the reflected light too: the layer's illumination (1 = full sun).
    """
    if relief == "albedo":
        a_band = np.clip(albedo[None] * brightness[None] * tint[:, None, None], 0.0, 0.98)
        reflected = a_band
    else:
        a_band = np.clip(albedo[None] * tint[:, None, None], 0.0, 0.98)
        reflected = brightness[None] * a_band
    return lit * reflected + (1 - a_band) ** 2 * below / (1 - a_band * below)


def _shaded_layers(surface, layers, azimuth, crop, diffuse, brightness, tint, relief) -> np.ndarray:
    """Reflectance (4, S, S) of cloud layers stacked bottom to top over ``surface``, each lit through those above it.

    Layers are ordered by height (their true shadow length in pixels, height / tan(sun elevation), one
    elevation for the scene; not clamped like the surface shadow). Layer k's reflected light is scaled by
    its illumination: the band's diffuse floor plus the direct part exp(-tau) of the higher layers'
    thickness moved by (their length - k's length) along the sun azimuth, so a low cloud in a high
    cloud's shadow is dark grey, and still cloud. Each layer is added
    with the adding formula R = s a + (1 - a)^2 R_below / (1 - a R_below). With every layer fully lit this
    equals the one-layer formula of the summed thickness (tau / (tau + c) layers add exactly), so only
    the shading is new; the labels, from the summed thickness, do not change.
    """
    image = surface
    order = sorted(range(len(layers)), key=lambda k: layers[k][0])
    for position, k in enumerate(order):
        reach_k, _, thickness = layers[k]
        above = np.zeros(thickness.shape, np.float32)
        for j in order[position + 1 :]:
            reach_j, caster, _ = layers[j]
            d = reach_j - reach_k
            above += shift(caster, int(round(d * np.sin(azimuth))), int(round(d * np.cos(azimuth))))[crop]
        lit = diffuse[:, None, None] + (1 - diffuse[:, None, None]) * np.exp(-above)[None]
        image = _add_layer(image, thickness / (thickness + ALBEDO_TAU), brightness, tint, relief, lit)
    return image


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
