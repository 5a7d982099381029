"""The UDF door: `udf/cloud_mask.py` run through `openeo.udf.run_udf_code`, exactly as a backend runs it.

Cubes are built from blocks whose brightness encodes (t, y, x), so a
transposed or flipped axis gives a wrong class somewhere. The tiny plumbing
model (tests/tiny_model.py) makes the expected answer computable.
"""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

from tiny_model import expected_codes

UDF_PATH = Path(__file__).resolve().parent.parent / "udf" / "cloud_mask.py"
UDF_CODE = UDF_PATH.read_text()
BLOCK = 16
LEVELS = np.array([150, 1000, 2500, 6000])  # tiny model: shadow, clear, semi-transparent, cloud


def coordinate_cube(t=3, height=96, width=80, dtype="uint16", extra_bands=("SCL",), order=("t", "bands", "y", "x")):
    """A cube whose block brightness is a function of (t, block row, block column)."""
    by = np.arange(height)[:, None] // BLOCK
    bx = np.arange(width)[None, :] // BLOCK
    frames = [LEVELS[(by + 2 * bx + 3 * i) % 4] for i in range(max(t, 1))]
    image = np.stack(frames)[:, None].repeat(4, axis=1).astype(np.float64)
    image[:, 3] *= 1.1  # B08 differs from the visible bands; the tiny model ignores it
    bands = ["B02", "B03", "B04", "B08"]
    if extra_bands:
        image = np.concatenate([image, np.full((image.shape[0], len(extra_bands), height, width), 4.0)], axis=1)
        bands += list(extra_bands)
    cube = xr.DataArray(
        image.astype(dtype),
        dims=("t", "bands", "y", "x"),
        coords={
            "t": np.array(["2024-05-01", "2024-05-11", "2024-05-21"][: max(t, 1)], dtype="datetime64[ns]"),
            "bands": bands,
            "y": 5_000_000.0 - 10.0 * np.arange(height),
            "x": 600_000.0 + 10.0 * np.arange(width),
        },
        attrs={"crs": "EPSG:32633", "note": "kept"},
    )
    if t == 0:
        cube = cube.isel(t=0, drop=True)
        order = tuple(d for d in order if d != "t")
    return cube.transpose(*order)


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels at least 3 px away from a block edge, where the tiny model's 5x5 average is exact."""
    yy = np.arange(mask.shape[-2]) % BLOCK
    xx = np.arange(mask.shape[-1]) % BLOCK
    keep_y = (yy >= 3) & (yy < BLOCK - 3)
    keep_x = (xx >= 3) & (xx < BLOCK - 3)
    return keep_y[:, None] & keep_x[None, :]


def run_udf(cube: xr.DataArray, context: dict) -> xr.DataArray:
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context)
    result = run_udf_code(code=UDF_CODE, data=data)
    return result.get_datacube_list()[0].get_array()


def expected_for(cube: xr.DataArray) -> np.ndarray:
    dn = cube.sel(bands=["B02", "B03", "B04", "B08"])
    if "t" not in dn.dims:
        dn = dn.expand_dims("t")
    dn = dn.transpose("t", "bands", "y", "x").values
    return np.stack([expected_codes(frame) for frame in dn])


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16", "int32"])
@pytest.mark.parametrize(
    "order", [("t", "bands", "y", "x"), ("bands", "t", "x", "y"), ("y", "x", "t", "bands")], ids=lambda o: "".join(o)
)
def test_udf_classes_follow_coordinates(tiny_context, dtype, order):
    cube = coordinate_cube(dtype=dtype, order=order)
    out = run_udf(cube, tiny_context)

    assert out.dims == tuple("bands" if d == "bands" else d for d in order)
    assert list(out.bands.values) == ["cloud_mask"]
    assert out.dtype == np.uint8
    got = out.transpose("t", "bands", "y", "x").values[:, 0]
    want = expected_for(cube)
    keep = interior(got)
    assert set(np.unique(want[:, keep])) == {1, 2, 3, 4}
    np.testing.assert_array_equal(got[:, keep], want[:, keep])
    # Coordinates and attributes travel through unchanged.
    for dim in ("t", "y", "x"):
        np.testing.assert_array_equal(out[dim].values, cube[dim].values)
    assert out.attrs["note"] == "kept"


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_udf_without_time_dimension(tiny_context, dtype):
    cube = coordinate_cube(t=0, dtype=dtype, order=("bands", "y", "x"))
    out = run_udf(cube, tiny_context)
    assert out.dims == ("bands", "y", "x")
    keep = interior(out.values[0])
    np.testing.assert_array_equal(out.values[0][keep], expected_for(cube)[0][keep])


def test_nodata_zero_and_nan_are_class_5(tiny_context):
    cube = coordinate_cube(dtype="float32")
    values = cube.values.copy()
    b02 = list(cube.bands.values).index("B02")
    b08 = list(cube.bands.values).index("B08")
    values[0, b02, 5:9, 5:9] = 0  # zero in one band
    values[1, b08, 20:30, 40:50] = np.nan  # NaN in another
    values[2, :, :, :8] = 0  # an orbit edge
    out = run_udf(cube.copy(data=values), tiny_context).values[:, 0]
    assert (out[0, 5:9, 5:9] == 5).all()
    assert (out[1, 20:30, 40:50] == 5).all()
    assert (out[2, :, :8] == 5).all()
    assert (out[2, :, 12:] != 5).all()


def test_all_nodata_chunk_is_class_5_without_running_the_model(tiny_context, monkeypatch):
    cube = coordinate_cube(dtype="float32")
    cube = cube.copy(data=np.full(cube.shape, np.nan, dtype=np.float32))
    out = run_udf(cube, {**tiny_context, "output": "classes"})
    assert (out.values == 5).all()
    probs = run_udf(cube, {**tiny_context, "output": "probabilities"})
    assert (probs.sel(bands="prob_missing").values == 1).all()
    detection = run_udf(cube, {**tiny_context, "output": "cloud_detection"})
    assert np.isnan(detection.values).all()


def test_probabilities_and_cloud_detection_outputs(tiny_context):
    cube = coordinate_cube(dtype="uint16")
    probs = run_udf(cube, {**tiny_context, "output": "probabilities"})
    assert list(probs.bands.values) == [
        "prob_clear",
        "prob_cloud_shadow",
        "prob_semi_transparent_cloud",
        "prob_cloud",
        "prob_missing",
    ]
    np.testing.assert_allclose(probs.sum("bands").values, 1.0, atol=1e-4)
    classes = run_udf(cube, tiny_context)
    argmax = probs.transpose("t", "bands", "y", "x").values.argmax(axis=1) + 1
    np.testing.assert_array_equal(argmax, classes.transpose("t", "bands", "y", "x").values[:, 0])

    detection = run_udf(cube, {**tiny_context, "output": "cloud_detection"})
    assert list(detection.bands.values) == ["cloud", "shadow"]
    assert detection.dtype == np.float32
    np.testing.assert_allclose(
        detection.sel(bands="cloud").values,
        probs.sel(bands="prob_cloud").values + probs.sel(bands="prob_semi_transparent_cloud").values,
        atol=1e-5,
    )


def test_buffer_grows_cloud_and_shadow_over_clear_only(tiny_context):
    cube = coordinate_cube(t=0, dtype="uint16", order=("bands", "y", "x"))
    plain = run_udf(cube, tiny_context).values[0]
    buffered = run_udf(cube, {**tiny_context, "buffer_m": 40}).values[0]
    changed = plain != buffered
    assert changed.any()
    assert (plain[changed] == 1).all(), "only clear pixels may be claimed by a buffer"
    assert (buffered[changed] != 1).all()
    # 40 m at 10 m pixels: nothing farther than 4 px (octagon radius) from a non-clear pixel changes.
    assert (plain != 1).sum() < (buffered != 1).sum()


def test_chunk_smaller_than_model_minimum_is_padded_not_rejected(tiny_context):
    cube = coordinate_cube(t=1, height=96, width=80, dtype="uint16").isel(y=slice(3, 8), x=slice(3, 10))
    out = run_udf(cube, tiny_context)
    assert out.sizes["y"] == 5 and out.sizes["x"] == 7
    np.testing.assert_array_equal(out.values[0, 0], expected_for(cube)[0])


def test_result_does_not_depend_on_chunk_boundaries(tiny_context):
    """Whole cube vs four overlapping chunks (as apply_neighborhood cuts them, overlap trimmed)."""
    rng = np.random.default_rng(3)
    height, width, overlap = 200, 232, 16
    noise = rng.normal(0, 1, (height // 8, width // 8)).repeat(8, 0).repeat(8, 1)
    brightness = np.clip(1800 + 1600 * noise, 1, 9000)
    image = np.stack([brightness] * 4)[None].astype(np.float32)
    cube = xr.DataArray(
        image,
        dims=("t", "bands", "y", "x"),
        coords={"t": [np.datetime64("2024-06-01", "ns")], "bands": ["B02", "B03", "B04", "B08"]},
    )
    whole = run_udf(cube, tiny_context).values
    stitched = np.zeros_like(whole)
    half_y, half_x = height // 2, width // 2
    for y0, y1 in ((0, half_y), (half_y, height)):
        for x0, x1 in ((0, half_x), (half_x, width)):
            ys, xs = max(0, y0 - overlap), max(0, x0 - overlap)
            chunk = cube.isel(y=slice(ys, min(height, y1 + overlap)), x=slice(xs, min(width, x1 + overlap)))
            out = run_udf(chunk, tiny_context).values
            stitched[..., y0:y1, x0:x1] = out[..., y0 - ys : y1 - ys, x0 - xs : x1 - xs]
    np.testing.assert_array_equal(stitched, whole)


@pytest.mark.parametrize(
    ("context", "message", "key"),
    [
        ({"procesing_level": "L2A"}, "unknown context key(s) ['procesing_level']; valid keys are", "procesing_level"),
        ({"processing_level": "L3"}, "processing_level must be 'L1C' or 'L2A'", "processing_level"),
        ({"output": "mask"}, "output must be one of", "output"),
        ({"buffer_m": -10}, "buffer_m must be >= 0 metres", "buffer_m"),
        ({"buffer_m": 20, "output": "probabilities"}, "set buffer_m to 0", "buffer_m"),
        ({"radiometric_offset": "1000"}, "radiometric_offset must be a number", "radiometric_offset"),
        ({"pixel_size_m": -1}, "pixel_size_m must be a positive number", "pixel_size_m"),
        ({"window_size": 8}, "set window_size >=", "window_size"),
        ({"window_overlap": 40}, "window_overlap 40 must be less than half", "window_overlap"),
        ({"model": ""}, "model must be a model id", "model"),
        ({"model": "no-such-model"}, "model 'no-such-model' not found", "model"),
        ({"model_dir": "https://example.org/models"}, "udf-dependency-archives", "model_dir"),
    ],
)
def test_bad_context_is_a_clear_error_that_carries_its_key(tiny_context, context, message, key):
    with pytest.raises(Exception) as info:  # the UDF's own CloudMaskError: run_udf_code loads a module of its own
        run_udf(coordinate_cube(), {**tiny_context, **context})
    assert "CloudMaskError" in [cls.__name__ for cls in type(info.value).__mro__]
    assert message in str(info.value)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_missing_band_names_the_bands_and_the_fix(tiny_context):
    cube = coordinate_cube().sel(bands=["B02", "B04", "B08", "SCL"])
    with pytest.raises(ValueError) as info:
        run_udf(cube, tiny_context)
    assert "['B03'] are missing" in str(info.value)
    assert "load_collection" in str(info.value)


def test_wrong_dimensions_and_dtype_and_scaling(tiny_context):
    cube = coordinate_cube()
    with pytest.raises(ValueError, match="dimensions .* are not supported"):
        run_udf(cube.rename(bands="band"), tiny_context)
    with pytest.raises(ValueError, match="dtype bool is not supported"):
        run_udf(cube > 1000, tiny_context)
    with pytest.raises(ValueError, match="look like reflectance 0..1"):
        run_udf(cube.astype("float32") / 10000.0, tiny_context)


def test_level_contradicted_by_bands_names_the_parameter(tiny_context):
    with pytest.raises(ValueError, match="processing_level='L1C' but the cube has L2A-only band"):
        run_udf(coordinate_cube(extra_bands=("SCL",)), {**tiny_context, "processing_level": "L1C"})
    with pytest.raises(ValueError, match="processing_level='L2A' but the cube has L1C-only band"):
        run_udf(coordinate_cube(extra_bands=("B10",)), {**tiny_context, "processing_level": "L2A"})


def test_radiometric_offset_is_subtracted(tiny_context):
    cube = coordinate_cube(extra_bands=())
    plain = run_udf(cube, tiny_context)
    shifted = run_udf(cube + 1000, {**tiny_context, "radiometric_offset": 1000})
    np.testing.assert_array_equal(plain.values, shifted.values)


def test_corrupt_or_mismatched_model_file_names_the_file(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "tiny-test.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(Exception) as info:
        run_udf(coordinate_cube(), {"model": "tiny-test", "model_dir": str(broken)})
    assert "tiny-test.onnx" in str(info.value) and "sha256" in str(info.value)

    with pytest.raises(Exception) as info:
        run_udf(coordinate_cube(), {"model": "no-such-model", "model_dir": str(broken)})
    assert "no-such-model" in str(info.value) and "udf-dependency-archives" in str(info.value)


def test_apply_metadata_renames_bands(tiny_context):
    from openeo.metadata import Band, BandDimension, CubeMetadata, SpatialDimension, TemporalDimension

    namespace = {}
    exec(compile(UDF_CODE, str(UDF_PATH), "exec"), namespace)
    metadata = CubeMetadata(
        dimensions=[
            TemporalDimension(name="t", extent=None),
            BandDimension(name="bands", bands=[Band(b) for b in ("B02", "B03", "B04", "B08")]),
            SpatialDimension(name="x", extent=[0, 1]),
            SpatialDimension(name="y", extent=[0, 1]),
        ]
    )
    renamed = namespace["apply_metadata"](metadata, {"output": "cloud_detection"})
    assert renamed.band_names == ["cloud", "shadow"]
    assert namespace["apply_metadata"](metadata, {}).band_names == ["cloud_mask"]


def test_session_is_created_once_per_process(tiny_context):
    from openeo.udf.run_code import load_module_from_string

    module = load_module_from_string(UDF_CODE)  # openEO caches the UDF module per code string
    run_udf(coordinate_cube(), tiny_context)
    loads = module["SESSION_LOADS"]["count"]
    for _ in range(3):
        run_udf(coordinate_cube(), tiny_context)
    assert module["SESSION_LOADS"]["count"] == loads >= 1


@pytest.mark.parametrize("first", [0.0, 0.5])  # pixel corners, pixel centres (what backends give)
@pytest.mark.parametrize("spacing", [10.0, -10.0, 20.0])
def test_grid_phase_of_a_chunk_is_its_offset_in_the_scene(first, spacing):
    from openeo_cloudmask.udf.cloud_mask import grid_phase

    coords = spacing * (first + 40_001 + np.arange(64))
    for offset in range(8):  # odd offsets too: round() would send x.5 to the even neighbour
        assert grid_phase(coords[offset:]) == grid_phase(coords) + offset


@pytest.mark.parametrize("shape,lead,corner,size", [
    ((4, 70, 90), (0, 0), (0, 0), (96, 96)),     # padded past the end only
    ((4, 70, 90), (5, 31), (0, 0), (96, 128)),   # the lead before, and past the end
    ((4, 200, 150), (7, 3), (64, 32), (96, 96)),  # an interior window: a plain cut
    ((4, 200, 150), (7, 3), (128, 96), (96, 64)),  # the last window, hanging over the end
    ((4, 3, 2), (5, 6), (0, 0), (16, 16)),       # smaller than its padding: numpy's own padding
    ((4, 300, 5), (7, 3), (128, 0), (96, 64)),   # a long thin strip: thinner than its padding, longer than the window
])
def test_window_input_is_the_reflected_image_cut(shape, lead, corner, size):
    from openeo_cloudmask.udf.cloud_mask import _pad_lead, _pad_to, _window_input

    dn = np.random.default_rng(1).integers(1, 10_000, shape).astype(np.uint16)
    (r, c), (h, w) = corner, size
    whole = _pad_lead(dn, *lead)
    whole = _pad_to(whole, max(whole.shape[1], r + h), max(whole.shape[2], c + w))
    got = _window_input(dn, *lead, r, c, h, w)
    assert got.dtype == np.float32 and got.shape == (1, 4, h, w)
    np.testing.assert_array_equal(got[0], whole[:, r : r + h, c : c + w])


# --------------------------------------------------------------------------- the engine owns the contract (issue 20)

from openeo_cloudmask.udf import cloud_mask as engine  # noqa: E402  (the installed engine, for its contract)

REPO = UDF_PATH.parent.parent


def test_options_are_frozen_and_know_halo_dtype_bands_and_chunk(tiny_context, tiny_model_dir):
    import dataclasses
    import json

    tiling = json.loads((Path(tiny_model_dir) / "tiny-test.json").read_text())["tiling"]
    options = engine.parse_context({**tiny_context, "buffer_m": 25})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.buffer_m = 0
    model = options.describe()
    assert options.halo(model, 10.0) == tiling["recommended_overlap"] + 2  # round(25 / 10)
    assert options.halo(model, 20.0) == tiling["recommended_overlap"] + 1
    assert options.halo(model) == tiling["recommended_overlap"] + round(25 / model.resolution_m)
    assert options.chunk(model) == tiling["recommended_chunk"]
    # doors that cut in their own memory take the largest chunk whose halo fits one window, never a smaller one
    halo = options.halo(model)
    assert options.local_chunk(model) == max(tiling["recommended_chunk"], tiling["recommended_window"] - 2 * halo)
    assert (options.dtype, options.band_names) == (np.uint8, ["cloud_mask"])
    probabilities = engine.parse_context({"output": "probabilities"})
    assert probabilities.dtype == np.float32 and len(probabilities.band_names) == len(engine.CLASS_CODES)
    assert engine.parse_context(options) is options and engine.parse_context(options.context()) == options
    assert engine.CONTEXT_DEFAULTS == {f.name: f.default for f in dataclasses.fields(engine.Options)}


def test_engine_declares_its_public_names_and_no_door_reaches_a_private_one():
    import re

    assert all(hasattr(engine, name) for name in engine.__all__)
    private = re.compile(r"\bengine\._[a-z]|from openeo_cloudmask\.udf\.cloud_mask import[^\n]*\b_[a-z]")
    doors = [*(REPO / "backend_plugin").glob("*.py"), *(REPO / "src" / "openeo_cloudmask").rglob("*.py"),
             *(REPO / "examples").glob("*.py")]
    offenders = [str(path.relative_to(REPO)) for path in doors if private.search(path.read_text())]
    assert not offenders, offenders


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_byte_images_are_refused_with_a_fix(tiny_context, dtype):
    with pytest.raises(ValueError, match="load the bands as uint16 or float digital numbers") as info:
        run_udf(coordinate_cube(dtype="float32").clip(0, 120).astype(dtype), tiny_context)
    assert info.value.key == "data"


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_negative_digital_numbers_are_refused_with_a_fix(tiny_context, dtype):
    cube = coordinate_cube(dtype="int32")
    cube[0, 0, :4, :4] = -1000
    with pytest.raises(ValueError, match=r"negative values \(min -1000\).*mark nodata as 0"):
        run_udf(cube.astype(dtype), tiny_context)


def test_reflectance_with_nodata_markers_is_still_caught(tiny_context):
    cube = coordinate_cube(dtype="float32", extra_bands=()) / 10000.0
    cube[:, :, :5, :5] = 65535.0  # a few nodata pixels: the maximum is large, the data are still 0..1
    with pytest.raises(ValueError, match="look like reflectance 0..1"):
        run_udf(cube, tiny_context)
    dark = coordinate_cube(dtype="float32", extra_bands=())
    dark[:, :, :5, :5] = 1.0  # a few dark pixels do not make a DN cube look like reflectance
    assert run_udf(dark, tiny_context).shape[-2:] == dark.shape[-2:]


@pytest.mark.parametrize("shape", [(0, 0), (0, 80), (96, 0)])
@pytest.mark.parametrize("output", ["classes", "probabilities"])
def test_empty_chunk_gives_an_empty_result(tiny_context, shape, output):
    cube = coordinate_cube().isel(y=slice(0, shape[0]), x=slice(0, shape[1]))
    result = run_udf(cube, {**tiny_context, "output": output})
    assert result.dims == cube.dims and result.shape[2:] == shape
    assert result.dtype == engine.parse_context({"output": output}).dtype
    no_dates = engine.mask_cube(coordinate_cube().isel(t=slice(0, 0)), tiny_context)
    assert no_dates.sizes["t"] == 0 and no_dates.sizes["x"] == 80


def test_ort_threads_variable_is_read_and_checked(tiny_context, monkeypatch):
    monkeypatch.setenv(engine.THREADS_ENV, "1")
    assert engine.default_threads() == 1
    monkeypatch.setenv(engine.THREADS_ENV, "two")
    with pytest.raises(engine.InvalidContextError, match="must be a whole number of threads") as info:
        engine.default_threads()
    assert info.value.key == engine.THREADS_ENV
    monkeypatch.delenv(engine.THREADS_ENV)
    assert engine.default_threads() == 0  # outside a Dask worker: onnxruntime's own default
