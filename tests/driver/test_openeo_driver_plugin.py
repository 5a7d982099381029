"""``cloud_mask`` in openeo-driver's dummy backend, served on 127.0.0.1 and driven by the openeo client.

The dummy backend has no pixels (its cubes are mocks), so ``apply_neighborhood``
on its cube is replaced by a recorder that runs the UDF it receives, with the
context the driver resolved, on a real coordinate-encoded cube through
``openeo.udf.run_udf_code`` (as geopyspark does per chunk) and keeps the result.
"""

import json

import numpy as np
import openeo
import pytest
import xarray as xr
from openeo.rest import OpenEoApiError
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

from tiny_model import TINY_MODEL_ID

from openeo_cloudmask.udf import cloud_mask as engine

COLLECTION = "SENTINEL2_L2A_SENTINELHUB"
BANDS = ["B02", "B03", "B04", "B08"]


def sample_cube() -> xr.DataArray:
    rng = np.random.default_rng(0)
    levels = np.array([150, 1000, 2500, 6000])
    blocks = levels[rng.integers(0, 4, size=(2, 6, 6))].repeat(16, axis=1).repeat(16, axis=2)
    data = np.repeat(blocks[:, None], 4, axis=1).astype(np.uint16)
    return xr.DataArray(
        data, dims=("t", "bands", "y", "x"),
        coords={"t": np.array(["2024-05-01", "2024-05-11"], dtype="datetime64[ns]"), "bands": BANDS,
                "y": 5_000_000.0 - 10 * np.arange(96), "x": 600_000.0 + 10 * np.arange(96)},
    )


@pytest.fixture(scope="module")
def registered(tiny_model_dir):
    from openeo_cloudmask.backend_plugin import openeo_driver_plugin

    return openeo_driver_plugin.register(model=TINY_MODEL_ID, model_dir=str(tiny_model_dir))


@pytest.fixture(scope="module")
def recorder():
    from openeo_driver.dummy.dummy_backend import DummyDataCube

    calls = []

    def apply_neighborhood(self, process, *, size, overlap, env, context=None):
        udf = process["runudf1"]["arguments"]["udf"]
        result = run_udf_code(udf, UdfData(datacube_list=[XarrayDataCube(sample_cube())], user_context=context))
        calls.append({"size": size, "overlap": overlap, "context": context, "result": result.get_datacube_list()[0].get_array()})
        return self

    mp = pytest.MonkeyPatch()
    mp.setattr(DummyDataCube, "apply_neighborhood", apply_neighborhood, raising=False)
    yield calls
    mp.undo()


@pytest.fixture(scope="module")
def server(registered, recorder):
    from conftest import serve_dummy_backend

    yield from serve_dummy_backend()


@pytest.fixture
def connection(server):
    return openeo.connect(server).authenticate_basic("alice", "alice123")


def masked(connection, bands=BANDS, **arguments):
    cube = connection.load_collection(COLLECTION, bands=bands)
    return cube.process("cloud_mask", data=cube, **{"model": TINY_MODEL_ID, **arguments})


def test_process_is_listed_with_its_spec(server):
    spec = openeo.connect(server).describe_process("cloud_mask")
    assert [p["name"] for p in spec["parameters"]] == ["data", "model", "processing_level", "radiometric_offset", "output", "buffer"]
    assert "ProcessParameterInvalid" in spec["exceptions"]


def test_execute_runs_the_udf_with_resolved_context(connection, recorder, tiny_model_dir):
    recorder.clear()
    masked(connection, processing_level="L2A", output="classes").download(format="GTiff")
    assert len(recorder) == 1
    call = recorder[0]
    # size = the tiny card's recommended_chunk (window 64 - 2 x overlap 8), overlap = its recommended_overlap
    assert [o["value"] for o in call["size"][:2]] == [48, 48] and [o["value"] for o in call["overlap"]] == [8, 8]
    assert call["context"]["model"] == TINY_MODEL_ID and call["context"]["output"] == "classes"
    expected = engine.mask_cube(sample_cube(), {"model": TINY_MODEL_ID, "model_dir": str(tiny_model_dir)})
    np.testing.assert_array_equal(call["result"].transpose(*expected.dims).values, expected.values)


@pytest.mark.parametrize(
    "arguments,code,words",
    [
        ({"output": "mask"}, "ProcessParameterInvalid", ["output", "mask"]),
        ({"processing_level": "L3"}, "ProcessParameterInvalid", ["processing_level"]),
        ({"buffer": -5}, "ProcessParameterInvalid", ["buffer"]),
        ({"radiometric_offset": "1000"}, "ProcessParameterInvalid", ["radiometric_offset"]),
        ({"colour": "red"}, "ProcessParameterUnsupported", ["colour"]),
        ({"output": "probabilities", "buffer": 20}, "ProcessParameterInvalid", ["buffer"]),
    ],
)
def test_bad_arguments_get_openeo_errors(connection, recorder, arguments, code, words):
    recorder.clear()
    with pytest.raises(OpenEoApiError) as info:
        masked(connection, **arguments).download(format="GTiff")
    assert info.value.code == code, info.value
    for word in words:
        assert word in info.value.message
    assert recorder == []  # rejected before the chunked work started


def test_wrong_band_set(connection, recorder):
    with pytest.raises(OpenEoApiError) as info:
        masked(connection, bands=["B02", "B03", "B04"]).download(format="GTiff")
    assert info.value.code == "ProcessParameterInvalid"
    assert "B08" in info.value.message
