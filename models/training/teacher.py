"""Teacher labels on real cloudy scenes: an ensemble of ukis-csmask models and s2cloudless.

ukis-csmask (DLR, Apache-2.0) ships four ONNX U-Nets: 4-band (blue, green,
red, NIR) and 6-band (+ SWIR 1.6/2.2 um), each for L1C and L2A. Its classes are
0 clear ("background"), 1 cloud, 2 cloud shadow. We run every model the scene
has bands for, at the scene's processing level, and average their softmax
probabilities. Where the scene has all 13 bands at L1C, s2cloudless 1.7.3
(Sinergise, its shipped LightGBM model) gives a cloud probability too, or the
file's stored s2cloudless probability does; the cloud probability is then
averaged with it (the clear/shadow split keeps the ukis ratio).

How the teacher's classes become our targets (clear -> 1, shadow -> 2, cloud
-> 3 and/or 4 by the opaque rule, input nodata -> 5) is in labels.py.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

#: ukis class index -> set of our class codes.
UKIS_TO_OURS = {0: (1,), 1: (3, 4), 2: (2,)}
TEACHER_DESCRIPTION = (
    "ensemble of ukis-csmask 1.0.0 ONNX models (4-band, plus 6-band where B11/B12 exist; L1C or L2A variant "
    "by the file's processing_level; mean of softmax probabilities), cloud probability averaged with "
    "s2cloudless 1.7.3 where the scene has all 13 L1C bands (or with the file's stored s2cloudless "
    "probability). Class mapping: ukis clear -> 1 clear, ukis cloud shadow -> 2 cloud_shadow, ukis cloud -> "
    "the opaque rule's set (see labels), input nodata -> 5 missing. Loss weight = ensemble max probability."
)


def _ukis_dir() -> Path:
    import ukis_csmask

    return Path(ukis_csmask.__file__).parent


def ukis_probabilities(reflectance: np.ndarray, level: str, six_band: bool, threads: int = 2) -> np.ndarray:
    """Softmax (3, H, W) of one ukis-csmask model for reflectance (C, H, W), C = 4 or 6 (B02 B03 B04 B08 [B11 B12]).

    Images smaller than the model's 256 px tile are reflection-padded; the
    tiling and smooth blending are ukis-csmask's own.
    """
    import onnxruntime as ort
    from scipy.special import softmax
    from ukis_csmask.utils import tile_array, untile_array

    name = f"model_{'6' if six_band else '4'}b_{level.lower()}"
    meta = json.loads((_ukis_dir() / f"{name}.json").read_text())
    mean = np.asarray(meta["data"]["dataset_statistics"]["img"][0], dtype=np.float32)
    std = np.asarray(meta["data"]["dataset_statistics"]["img"][1], dtype=np.float32)
    tile = meta["data"]["target_size"][0]
    session = _session(str(_ukis_dir() / f"{name}.onnx"), threads)
    _, height, width = reflectance.shape
    pad_h, pad_w = max(0, tile - height), max(0, tile - width)
    image = np.pad(reflectance, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect") if pad_h or pad_w else reflectance
    image = ((np.moveaxis(image, 0, -1) - mean) / std).astype(np.float32)
    tiles = np.moveaxis(tile_array(image, xsize=tile, ysize=tile, overlap=0.2), -1, 1)
    input_name = session.get_inputs()[0].name
    probs = np.concatenate([softmax(session.run(None, {input_name: tiles[i : i + 8]})[0], axis=1) for i in range(0, len(tiles), 8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = untile_array(np.moveaxis(probs, 1, -1), (image.shape[0], image.shape[1], 3), overlap=0.2, smooth_blending=True)
    merged = np.moveaxis(merged, -1, 0)[:, :height, :width]
    merged = np.clip(merged, 0.0, None)
    return (merged / np.maximum(merged.sum(axis=0, keepdims=True), 1e-6)).astype(np.float32)


_SESSIONS: dict = {}


def _session(path: str, threads: int):
    import onnxruntime as ort

    key = (path, threads)
    if key not in _SESSIONS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def s2cloudless_probability(all_bands: np.ndarray, threads: int = 2) -> np.ndarray:
    """s2cloudless 1.7.3 cloud probability (H, W) for 13-band L1C DN (ALL_BANDS order), at the scene's own pixels."""
    from s2cloudless import S2PixelCloudDetector

    detector = S2PixelCloudDetector(all_bands=True, average_over=4, dilation_size=2)
    data = np.moveaxis(all_bands / 10000.0, 0, -1)[None].astype(np.float32)
    return detector.get_cloud_probability_maps(data, num_threads=threads)[0].astype(np.float32)


def teacher_probabilities(scene, use_s2cloudless: bool = True, four_band_only: bool = False) -> np.ndarray:
    """Ensemble probabilities (3, H, W) [clear, cloud, shadow] in ukis order for a :class:`Scene`."""
    refl = scene.dn / 10000.0
    members = [ukis_probabilities(refl, scene.level, six_band=False)]
    if scene.swir is not None and not four_band_only:
        members.append(ukis_probabilities(np.concatenate([refl, scene.swir / 10000.0]), scene.level, six_band=True))
    probs = np.mean(members, axis=0)
    s2c = scene.s2cloudless_probability
    if use_s2cloudless and s2c is None and scene.all_bands is not None and scene.level == "L1C":
        s2c = s2cloudless_probability(scene.all_bands)
    if use_s2cloudless and s2c is not None:
        cloud = 0.5 * (probs[1] + s2c)
        rest = np.maximum(probs[0] + probs[2], 1e-6)
        probs = np.stack([probs[0] / rest * (1 - cloud), cloud, probs[2] / rest * (1 - cloud)])
    return probs.astype(np.float32)


def ukis_classes_as_ours(ukis_class: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """Hard ukis classes (0 clear, 1 cloud, 2 shadow) as our codes; teacher cloud becomes 4."""
    ours = np.choose(ukis_class, [1, 4, 2]).astype(np.uint8)
    ours[nodata] = 5
    return ours
