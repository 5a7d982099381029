"""Training targets from real scenes: set labels over our codes 1..5, and a weight per pixel.

A target is a *set* of allowed classes per pixel (membership (5, H, W) bool over codes 1..5; the loss asks
that the classes in the set together are likely), so a source says only what it knows:

* **teacher** (teacher.py): clear -> {1}, shadow -> {2}, cloud -> the opaque rule's set; weight = the
  ensemble's confidence (its top probability). A shadow needs its cloud in view: in a crop where the teacher's
  shadow covers more than ``shadow_per_cloud`` times the area of its cloud, the shadow pixels weigh 0. A cloud's
  shadow has the cloud's area, so more shadow than that is a guess from darkness (a dim date, a shadow whose
  cloud is outside the crop) that the network could not check; the synthetic generator draws shadows only from
  clouds in view for the same reason.
* **human** (``label_human``): 1 -> the opaque rule's set, 0 -> "not cloud" {1, 2}. People draw cloud edges
  generously (polygons around the cloud, thin haze and some shadow inside), so a band of
  ``human_edge_px`` pixels on each side of a drawn edge gets weight 0: the model learns cloud from the
  cores of people's clouds and "not cloud" from the open ground away from them, and where exactly a cloud
  ends stays the synthetic data's exact truth.
* **clear** (scenes known to be cloud-free): every valid pixel {1}.
* input nodata -> {5}, weight 1, for every source.

**The opaque rule** (3 against 4 on real imagery). Semi-transparent cloud is cloud through which the
surface shows; opaque cloud hides it. On four bands the surface shows through as its spectral contrast:
vegetation's red edge (B08 well above B04) and water's NIR absorption (B08 well below B04) survive a thin
layer and vanish under a thick one, which is nearly flat from red to NIR. So a pixel that a teacher or a
person calls cloud is

* opaque {4} if it is bright (mean of B02, B03, B04 >= ``OPAQUE_MIN_VISIBLE``) and flat
  (``FLAT_RATIO[0]`` <= B08 / B04 <= ``FLAT_RATIO[1]``);
* semi-transparent {3} if the surface's contrast is plain (B08 / B04 > ``SURFACE_RATIO[1]`` or
  < ``SURFACE_RATIO[0]``);
* either {3, 4} otherwise: the network decides from context what the spectrum cannot.

Over the synthetic generator's vegetation spectrum a layer flattens B08 / B04 to 1.25 at albedo 0.43 and leaves it
above 1.5 below albedo 0.3. The generator calls cloud opaque from albedo 0.4 (``synthetic.CLOUD_ALBEDO``), so no
synthetic label over vegetation contradicts this rule (up to v2.0.0 the generator's line was 0.5: see
models/EXPERIMENTS.md, "one opaque definition").
"""

from __future__ import annotations

import numpy as np

from openeo_cloudmask.udf.cloud_mask import CLEAR, CLOUD, MISSING, SEMI, SHADOW  # noqa: F401  (the class table)

from openeo_cloudmask.models.training.teacher import UKIS_TO_OURS

OPAQUE_MIN_VISIBLE = 0.2
FLAT_RATIO = (0.8, 1.25)
SURFACE_RATIO = (0.6, 1.5)
RULE_DESCRIPTION = (
    "a pixel a teacher or a person calls cloud is opaque (4) where mean(B02, B03, B04) >= "
    f"{OPAQUE_MIN_VISIBLE} reflectance and {FLAT_RATIO[0]} <= B08/B04 <= {FLAT_RATIO[1]} (bright and spectrally "
    f"flat: the surface is hidden), semi-transparent (3) where B08/B04 > {SURFACE_RATIO[1]} or < "
    f"{SURFACE_RATIO[0]} (vegetation's red edge or water's NIR absorption shows through), either otherwise"
)


def teacher_shadow_text(shadow_per_cloud: float | None) -> str:
    """The card's line on which teacher shadows count (``teacher_shadow_per_cloud``)."""
    if shadow_per_cloud is None:
        return "Every teacher shadow counts."
    return (f"A shadow needs its cloud in view: in a crop where the teacher's shadow covers more than {shadow_per_cloud:g} "
            "times the area of the teacher's cloud, the shadow pixels weigh 0.")


def cloud_sets(dn: np.ndarray) -> np.ndarray:
    """Membership (2, H, W) over {3, 4} for pixels called cloud, by the opaque rule (module docstring)."""
    refl = dn / 10000.0
    visible = refl[:3].mean(axis=0)
    ratio = refl[3] / np.maximum(refl[2], 1e-4)
    opaque = (visible >= OPAQUE_MIN_VISIBLE) & (ratio >= FLAT_RATIO[0]) & (ratio <= FLAT_RATIO[1])
    semi = (ratio > SURFACE_RATIO[1]) | (ratio < SURFACE_RATIO[0])
    return np.stack([~opaque, ~semi | opaque])


def _with_nodata(member: np.ndarray, weight: np.ndarray, nodata: np.ndarray):
    member[:, nodata] = False
    member[MISSING - 1, nodata] = True
    weight[nodata] = 1.0
    return member, weight.astype(np.float32)


def teacher_targets(probs: np.ndarray, dn: np.ndarray, nodata: np.ndarray, shadow_per_cloud: float | None):
    """(membership (5, H, W), weight (H, W)) from teacher probabilities (3, H, W) in ukis order.

    ``shadow_per_cloud``: the most teacher shadow per unit of teacher cloud in the crop for the shadow to count
    (module docstring); None counts every shadow."""
    winner = np.argmax(probs, axis=0)
    member = np.zeros((5,) + winner.shape, dtype=bool)
    for ukis_class, codes in UKIS_TO_OURS.items():
        for code in codes:
            member[code - 1] |= winner == ukis_class
    member[SEMI - 1 : CLOUD] &= cloud_sets(dn)  # teacher cloud: semi-transparent and/or opaque by the rule
    weight = probs.max(axis=0).copy()
    if shadow_per_cloud is not None:
        shadow = member[SHADOW - 1] & ~nodata
        cloud = (member[SEMI - 1] | member[CLOUD - 1]) & ~nodata
        if shadow.sum() > shadow_per_cloud * cloud.sum():
            weight[shadow] = 0.0
    return _with_nodata(member, weight, nodata)


def human_targets(label: np.ndarray, dn: np.ndarray, nodata: np.ndarray, edge_px: int):
    """(membership, weight) from a human 0/1 cloud label; ``edge_px`` on each side of a drawn edge weigh 0."""
    from scipy.ndimage import binary_dilation

    cloud = label == 1
    member = np.zeros((5,) + label.shape, dtype=bool)
    member[[CLEAR - 1, SHADOW - 1]] = ~cloud
    member[SEMI - 1 : CLOUD] = cloud_sets(dn) & cloud
    weight = np.ones(label.shape, np.float32)
    if edge_px > 0 and cloud.any() and (~cloud).any():
        near_clear = binary_dilation(~cloud, iterations=edge_px)
        near_cloud = binary_dilation(cloud, iterations=edge_px)
        weight[near_clear & near_cloud] = 0.0
    return _with_nodata(member, weight, nodata)


def clear_targets(nodata: np.ndarray):
    """(membership, weight) for a scene known to be cloud-free: every valid pixel clear."""
    member = np.zeros((5,) + nodata.shape, dtype=bool)
    member[CLEAR - 1] = True
    return _with_nodata(member, np.ones(nodata.shape, np.float32), nodata)
