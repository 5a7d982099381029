"""The UDF as the geopyspark backend (CDSE) runs it in ``apply_neighborhood``, against the engine on the whole cube.

:func:`geopyspark_apply_neighborhood` emulates openeo-geopyspark-driver's
``apply_neighborhood`` with a single ``run_udf`` child:

- the cube is retiled into chunks of ``size`` px plus ``overlap`` px on every side
  (``OpenEOProcesses.retile``); beyond the cube the buffer is nodata, NaN for a
  float cube;
- with ``t`` size ``null`` every chunk carries the full time series
  (``apply_tiles_spatiotemporal``); with ``P1D`` each date is a call of its own;
- the UDF receives a float32 ``XarrayDataCube`` with dims ``('t', 'bands', 'y', 'x')``
  and metre coordinates, through ``openeo.udf.run_udf_code`` with the context as
  ``user_context``;
- the overlap is removed from each result (``remove_overlap``) and the chunks are
  stitched.

Sources: ``openeogeotrellis/geopysparkdatacube.py`` ``apply_neighborhood`` (size in
px, >= 32 px for UDFs, ``t`` null or ``P1D``) in Open-EO/openeo-geopyspark-driver.
"""

import json

import numpy as np
import pytest
import xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

from openeo_cloudmask import udp
from openeo_cloudmask.release import settings, udp_build
from openeo_cloudmask.udf import cloud_mask as engine
from tiny_model import TINY_MODEL_ID
from udp_builders import build_test_udp

UDF_CODE = udp.udf_source()
REAL_CARD = settings.MODELS_DIR / f"{engine.DEFAULT_MODEL}.json"


def run_udf(cube: xr.DataArray, context: dict) -> xr.DataArray:
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context)
    return run_udf_code(UDF_CODE, data).get_datacube_list()[0].get_array()


def geopyspark_apply_neighborhood(cube: xr.DataArray, context: dict, size: int, overlap: int,
                                  time: str = None) -> xr.DataArray:
    """Chunk, call the UDF per chunk, trim the overlap, stitch (see the module docstring)."""
    cube = cube.transpose("t", "bands", "y", "x").astype(np.float32)
    _, _, height, width = cube.shape
    rows, cols = int(np.ceil(height / size)), int(np.ceil(width / size))
    pad = ((0, 0), (0, 0), (overlap, rows * size - height + overlap), (overlap, cols * size - width + overlap))
    padded = np.pad(cube.values, pad, constant_values=np.nan)
    step_y = float(cube.y[1] - cube.y[0])
    step_x = float(cube.x[1] - cube.x[0])
    y = float(cube.y[0]) + step_y * (np.arange(padded.shape[2]) - overlap)
    x = float(cube.x[0]) + step_x * (np.arange(padded.shape[3]) - overlap)
    out = None
    for r in range(rows):
        for c in range(cols):
            ys, xs = slice(r * size, r * size + size + 2 * overlap), slice(c * size, c * size + size + 2 * overlap)
            dates = [slice(None)] if time is None else [slice(i, i + 1) for i in range(cube.sizes["t"])]
            for dt in dates:
                chunk = xr.DataArray(
                    padded[dt, :, ys, xs], dims=("t", "bands", "y", "x"),
                    coords={"t": cube.t.values[dt], "bands": cube.bands.values, "y": y[ys], "x": x[xs]},
                )
                result = run_udf(chunk, context)
                assert result.dims == ("t", "bands", "y", "x") and result.shape[2:] == chunk.shape[2:]
                if out is None:
                    out = np.zeros((cube.sizes["t"], result.sizes["bands"], rows * size, cols * size), result.dtype)
                core = result.values[:, :, overlap: overlap + size, overlap: overlap + size]
                out[dt, :, r * size: (r + 1) * size, c * size: (c + 1) * size] = core
    return xr.DataArray(out[:, :, :height, :width], dims=("t", "bands", "y", "x"),
                        coords={"t": cube.t.values, "y": cube.y.values, "x": cube.x.values})


def coordinate_cube(dates=3, height=150, width=130) -> xr.DataArray:
    """Float32 digital numbers whose values encode (t, y, x): a transposed axis gives different classes."""
    t, yy, xx = np.meshgrid(np.arange(dates), np.arange(height), np.arange(width), indexing="ij")
    brightness = 150.0 + 70.0 * yy + 9.0 * xx + 400.0 * t  # 150 .. ~11800 DN: shadow, clear, semi, cloud
    dn = np.stack([brightness, brightness * 0.95, brightness * 1.05, brightness * 1.1], axis=1).astype(np.float32)
    dn[1, :, 40:47, 60:70] = np.nan  # a nodata hole
    return xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={
        "t": np.datetime64("2023-05-01") + 5 * np.arange(dates).astype("timedelta64[D]"),
        "bands": ["B02", "B03", "B04", "B08"],
        "y": 5_600_000.0 - 10.0 * np.arange(height), "x": 600_000.0 + 10.0 * np.arange(width)})


def agreement(a: xr.DataArray, b: xr.DataArray, margin: int = 0):
    a, b = np.asarray(a), np.asarray(b)
    if margin:
        a, b = a[..., margin:-margin, margin:-margin], b[..., margin:-margin, margin:-margin]
    return float((a == b).mean())


@pytest.fixture(scope="module")
def tiny_window(tiny_model_dir):
    return udp_build.neighborhood_window(udp_build.load_card(TINY_MODEL_ID, tiny_model_dir))


# --------------------------------------------------------------------------- tiny model: exact-ish


@pytest.mark.parametrize("time", [None, "P1D"], ids=["t-null-full-series", "t-P1D"])
def test_stitched_chunks_equal_the_whole_cube(tiny_context, tiny_window, time):
    cube = coordinate_cube()
    size, overlap = tiny_window
    whole = engine.mask_cube(cube, tiny_context)
    stitched = geopyspark_apply_neighborhood(cube, tiny_context, size, overlap, time)
    assert set(np.unique(whole.values)) == {1, 2, 3, 4, 5}
    # Identical everywhere except within the model's receptive field (2 px for the tiny model) of the cube's
    # OUTER edge, where a chunk's buffer is nodata (NaN, masked as 0) while the whole-cube run reflects the image.
    # Chunk seams inside the cube leave no trace.
    assert agreement(stitched, whole.values, margin=3) == 1.0


def test_probabilities_agree_to_float_precision(tiny_context, tiny_window):
    cube = coordinate_cube(dates=2)
    context = dict(tiny_context, output="probabilities")
    whole = engine.mask_cube(cube, context).values
    stitched = geopyspark_apply_neighborhood(cube, context, *tiny_window).values
    np.testing.assert_allclose(stitched[..., 3:-3, 3:-3], whole[..., 3:-3, 3:-3], atol=1e-5)


@pytest.mark.shared_data
def test_shared_multi_date_cube(shared_data, tiny_context, tiny_window):
    """30 dates of real surface reflectance (DEA ARD), chunked as CDSE would chunk it."""
    ds = xr.open_dataset(shared_data / "s2cloudmask_wright_stack30.nc")
    cube = ds["reflectance"].sel(bands=["B02", "B03", "B04", "B08"]).astype(np.float32)
    cube = cube.assign_coords(y=5_000_000.0 - 10.0 * cube.y, x=700_000.0 + 10.0 * cube.x)  # pixel indices -> metres
    whole = engine.mask_cube(cube, tiny_context)
    stitched = geopyspark_apply_neighborhood(cube, tiny_context, *tiny_window)
    assert agreement(stitched, whole.values, margin=3) == 1.0  # see test_stitched_chunks_equal_the_whole_cube


# --------------------------------------------------------------------------- the real model: identical


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not REAL_CARD.is_file(), reason=f"real model card {REAL_CARD} not trained yet")
def test_real_model_stitched_equals_whole(shared_data):
    chips = [xr.open_dataarray(shared_data / f"oncloudn_runtime_{name}.nc") for name in ("adwp", "adwu", "adwz", "akny")]
    top = np.concatenate([chips[0].values, chips[1].values], axis=2)
    bottom = np.concatenate([chips[2].values, chips[3].values], axis=2)
    mosaic = np.concatenate([top, bottom], axis=1)[None]  # one date, 1024 x 1024
    n = mosaic.shape[-1]
    cube = xr.DataArray(mosaic.astype(np.float32), dims=("t", "bands", "y", "x"), coords={
        "t": [np.datetime64("2020-06-01")], "bands": ["B02", "B03", "B04", "B08"],
        "y": 5_000_000.0 - 10.0 * np.arange(n), "x": 500_000.0 + 10.0 * np.arange(n)})
    card = json.loads(REAL_CARD.read_text())
    size, overlap = udp_build.neighborhood_window(card)
    context = {"model": card["id"]}
    whole = engine.mask_cube(cube, context)
    stitched = geopyspark_apply_neighborhood(cube, context, size, overlap)
    # The outer `overlap` px frame of the cube is left out: there the emulated backend pads with nodata.
    assert agreement(stitched, whole.values, margin=overlap) == 1.0


# --------------------------------------------------------------------------- bad input, through run_udf_code


def small_cube(bands=("B02", "B03", "B04", "B08"), n=48):
    dn = np.full((1, len(bands), n, n), 1200.0, dtype=np.float32)
    return xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={"bands": list(bands)})


# run_udf_code executes the UDF source as a string, so its exception classes are not the installed module's:
# check the class name and the openEO-style code instead of the class object.


def test_level_mismatch_names_processing_level(tiny_context):
    cube = small_cube(("B02", "B03", "B04", "B08", "SCL"))  # SCL exists only in L2A
    with pytest.raises(ValueError, match=r"processing_level.*set processing_level to 'L2A'") as info:
        run_udf(cube, dict(tiny_context, processing_level="L1C"))
    assert type(info.value).__name__ == "InvalidContextError" and info.value.code == "InvalidContext"


def test_missing_bands_name_load_collection(tiny_context):
    with pytest.raises(ValueError, match=r"\['B08'\] are missing.*load_collection\(bands=\.\.\.\)") as info:
        run_udf(small_cube(("B02", "B03", "B04")), tiny_context)
    assert type(info.value).__name__ == "InvalidInputError" and info.value.code == "InvalidInput"


def test_window_smaller_than_the_model_needs_names_window_size(tiny_context):
    with pytest.raises(ValueError, match=r"window_size"):
        run_udf(small_cube(), dict(tiny_context, window_size=8))  # min_tile_size of the tiny model is 16 px


def test_small_edge_chunks_are_padded_not_refused(tiny_context):
    """Chunks smaller than the model's minimum tile occur legitimately at a cube's edge on backends that cut edge
    chunks (boundary "none"); the engine pads them. apply_neighborhood's ``size`` is checked where it is known:
    the UDP fixes it from the card, the local plugin's run_udf checks it."""
    result = run_udf(small_cube(n=8), tiny_context)
    assert result.shape == (1, 1, 8, 8)


# --------------------------------------------------------------------------- the UDP through the local backend plugin


def plugin_registry_module():
    from openeo_cloudmask.backend_plugin import registry

    return registry


@pytest.fixture
def tiny_udp_in_backend_dir(tiny_model_dir, tmp_path, monkeypatch):
    """The UDP built from the tiny card, run from a directory holding the unpacked dependency archive."""
    import shutil

    card = udp_build.load_card(TINY_MODEL_ID, tiny_model_dir)
    shutil.copytree(tiny_model_dir, tmp_path / engine.ARCHIVE_FOLDER / "models")
    monkeypatch.chdir(tmp_path)
    return build_test_udp(card, UDF_CODE, archive_option=f"https://example.invalid/deps.zip#{engine.ARCHIVE_FOLDER}")


def test_udp_graph_on_the_local_plugin_equals_the_engine(tiny_udp_in_backend_dir, tiny_context):
    """process_graphs/cloud_mask.json's body (apply_neighborhood + run_udf) executed by pg-parser-networkx with
    the plugin's local apply_neighborhood, parameters from the UDP's defaults."""
    registry = plugin_registry_module()
    cube = coordinate_cube()
    result = registry.run_process_graph(tiny_udp_in_backend_dir, registry.build_registry(), {"data": cube})
    local = np.asarray(result.transpose("t", "bands", "y", "x").values)
    whole = engine.mask_cube(cube, tiny_context).values
    assert local.shape == whole.shape
    # Every chunk carries the card's overlap, and edge chunks end where the cube ends: identical everywhere.
    assert agreement(local, whole) == 1.0
