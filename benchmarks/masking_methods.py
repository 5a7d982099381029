"""Every method the benchmark times, each built once and then called on a prepared scene.

A method is a :class:`Method`: a name, what it is, how many threads it uses,
and ``prepare(scene) -> input`` / ``run(input)``. ``prepare`` does what a user
of that method must do *anyway* before calling it with data already in memory
(build the xarray cube, pick the bands), and is not timed; ``run`` is timed and
includes everything the method does, including its own input conversion
(DN -> reflectance for the peers that want reflectance).

Thread settings (the machine has 2 cores): every onnxruntime session gets
``intra_op_num_threads=2, inter_op_num_threads=1`` (ours through the engine's
``OPENEO_CLOUDMASK_ORT_THREADS``, ukis-csmask through its constructor);
s2cloudless's LightGBM predictor gets ``num_threads=2``; numpy code (the
threshold floor, our blending) runs on one thread as numpy does.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Callable

import numpy as np

from openeo_cloudmask.udf import cloud_mask as engine

THREADS = 2
PIXEL_SIZE_M = 10.0

#: s2cloudless post-processing per resolution, as its README/examples recommend:
#: 10 m -> average_over=22, dilation_size=11; 60 m (and coarser) -> 4 and 2.
S2CLOUDLESS_SETTINGS = {
    10: {"threshold": 0.4, "average_over": 22, "dilation_size": 11},
    160: {"threshold": 0.4, "average_over": 4, "dilation_size": 2},
}
#: Brightness-threshold floor, the same rule as the evaluation's (models/training/evaluate.py), reflectance:
#: mean(B02, B03, B04) >= 0.25 cloud, >= 0.16 semi-transparent, B08 < 0.08 shadow, else clear.
THRESHOLD_CLOUD, THRESHOLD_SEMI, THRESHOLD_SHADOW_NIR = 0.25, 0.16, 0.08


@dataclasses.dataclass
class Method:
    name: str
    description: str
    threads: str
    prepare: Callable[[dict], Any]
    run: Callable[[Any], Any]
    #: Which scene the method reads: "four_band" (B02,B03,B04,B08 DN) or "s2cloudless" (10-band reflectance).
    scene: str = "four_band"


def dn_cube(dn: np.ndarray, pixel_size_m: float = PIXEL_SIZE_M):
    """(4, H, W) DN -> an xarray cube (bands, y, x) as an openEO backend hands it to the UDF."""
    import xarray as xr

    _, height, width = dn.shape
    x = 500000.0 + pixel_size_m * (np.arange(width) + 0.5)
    y = 5200000.0 - pixel_size_m * (np.arange(height) + 0.5)
    return xr.DataArray(dn, dims=("bands", "y", "x"), coords={"bands": ["B02", "B03", "B04", "B08"], "y": y, "x": x})


def model_context(model_id: str, model_dir) -> dict:
    return {"model": model_id, "model_dir": None if model_dir is None else str(model_dir)}


def our_engine(model_id: str, model_dir) -> Method:
    """The whole UDF path: ``mask_cube`` on an xarray cube (validation, prep, windows, inference, blending, argmax)."""
    os.environ[engine.THREADS_ENV] = str(THREADS)
    context = model_context(model_id, model_dir)
    return Method(
        name="ours_engine",
        description="our engine, `mask_cube` (UDF path: checks, prep, windows, onnxruntime, blending, argmax)",
        threads=f"onnxruntime intra_op={THREADS}, inter_op=1",
        prepare=lambda scene: dn_cube(scene["four_band"]),
        run=lambda cube: engine.mask_cube(cube, context),
    )


def raw_inference(model_id: str, model_dir) -> Method:
    """Only ``session.run`` on the same pixels, as one (1, 4, H, W) float32 tensor: the model's own cost (class
    indices, as the engine asks for class maps)."""
    model = engine.load_model(model_id, None if model_dir is None else str(model_dir), THREADS)
    multiple = model.size_multiple
    name = model.classes_name or model.output_name  # what the engine asks for when it makes class maps

    def prepare(scene):
        dn = scene["four_band"].astype(np.float32)
        _, h, w = dn.shape
        if h % multiple or w % multiple:
            dn = np.pad(dn, ((0, 0), (0, -h % multiple), (0, -w % multiple)), mode="reflect")
        return np.ascontiguousarray(dn[None])

    return Method(
        name="ours_raw_inference",
        description="our ONNX model alone: one `session.run` on the whole scene (no windows, no blending)",
        threads=f"onnxruntime intra_op={THREADS}, inter_op=1",
        prepare=prepare,
        run=lambda tensor: model.session.run([name], model.feed(tensor, probabilities=name == model.output_name)),
    )


def onnx_file_inference(name: str, description: str, onnx_path, input_name: str = "dn") -> Method:
    """Raw inference of another ONNX file (a quantised or fp16 variant) on the same tensor as ours."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    return Method(
        name=name,
        description=description,
        threads=f"onnxruntime intra_op={THREADS}, inter_op=1",
        prepare=lambda scene: np.ascontiguousarray(scene["four_band"].astype(np.float32)[None]),
        run=lambda tensor: session.run(None, {input_name: tensor}),
    )


def ukis_csmask() -> Method:
    """ukis-csmask 1.0.0, 4-band L2A model, through ``CSmask`` (its tiling, 256 px tiles, 20 % overlap)."""
    from ukis_csmask.mask import CSmask

    def run(dn_hwc):
        # CSmask wants (rows, cols, bands) float32 reflectance 0..1 and band names; product level of our chips: L2A.
        refl = dn_hwc.astype(np.float32)
        refl *= np.float32(1e-4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = CSmask(
                refl,
                band_order=["blue", "green", "red", "nir"],
                product_level="l2a",
                nodata_value=0,
                intra_op_num_threads=THREADS,
                inter_op_num_threads=1,
                providers=["CPUExecutionProvider"],
            )
        return result.csm

    return Method(
        name="ukis_csmask",
        description="ukis-csmask 1.0.0 `CSmask`, 4-band L2A model (reflectance 0..1, blue/green/red/nir)",
        threads=f"onnxruntime intra_op={THREADS}, inter_op=1 (CSmask arguments)",
        prepare=lambda scene: np.ascontiguousarray(np.moveaxis(scene["four_band"], 0, -1)),
        run=run,
    )


def s2cloudless(resolution_m: int) -> Method:
    """s2cloudless 1.7.3 ``S2PixelCloudDetector`` with its shipped LightGBM model, at 10 m or 160 m.

    At 160 m the 10 m scene is block-averaged 16x16, classified, and the mask
    repeated back onto the 10 m grid; all of it is timed, and the rate counts
    the 10 m pixels covered.
    """
    from s2cloudless import S2PixelCloudDetector

    settings = S2CLOUDLESS_SETTINGS[resolution_m]
    detector = S2PixelCloudDetector(all_bands=False, **settings)
    factor = resolution_m // 10

    def run(refl):
        if factor == 1:
            return detector.get_cloud_masks(refl[None], num_threads=THREADS)[0]
        h, w, c = refl.shape
        hh, ww = h // factor, w // factor
        coarse = refl[: hh * factor, : ww * factor].reshape(hh, factor, ww, factor, c).mean(axis=(1, 3))
        mask = detector.get_cloud_masks(coarse[None], num_threads=THREADS)[0]
        return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)

    return Method(
        name=f"s2cloudless_{resolution_m}m",
        description=(
            f"s2cloudless 1.7.3 `S2PixelCloudDetector` at {resolution_m} m "
            f"(threshold {settings['threshold']}, average_over {settings['average_over']}, "
            f"dilation_size {settings['dilation_size']})"
            + ("; block-mean downsampling and nearest upsampling to 10 m included" if factor > 1 else "")
        ),
        threads=f"LightGBM num_threads={THREADS}; cv2 post-processing default",
        prepare=lambda scene: scene["s2cloudless"],
        run=run,
        scene="s2cloudless",
    )


def threshold_codes(dn: np.ndarray) -> np.ndarray:
    """The floor on (4, H, W) DN: KappaMask codes from brightness alone (see THRESHOLD_*); all-zero DN -> 5."""
    visible = dn[0].astype(np.float32)
    visible += dn[1]
    visible += dn[2]  # 3 x mean visible, in DN
    codes = np.ones(visible.shape, dtype=np.uint8)
    codes[dn[3] < THRESHOLD_SHADOW_NIR * 1e4] = 2
    codes[visible >= np.float32(3e4 * THRESHOLD_SEMI)] = 3
    codes[visible >= np.float32(3e4 * THRESHOLD_CLOUD)] = 4
    codes[(dn == 0).all(axis=0)] = 5
    return codes


def brightness_threshold() -> Method:
    return Method(
        name="brightness_threshold",
        description=(f"floor, the evaluation's rule: mean(B02, B03, B04) reflectance >= {THRESHOLD_CLOUD} cloud, "
                     f">= {THRESHOLD_SEMI} semi-transparent, B08 < {THRESHOLD_SHADOW_NIR} shadow (numpy)"),
        threads="numpy, 1 thread",
        prepare=lambda scene: scene["four_band"],
        run=threshold_codes,
    )
