"""The registered processes (`backend_plugin/`) run through the real parser and registry, as a backend runs them.

Every bad-input test runs under a Dask scheduler that fails the test if anything
is computed: the errors must come from metadata, before compute.
"""

import json
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

from tiny_model import TINY_MODEL_ID, build_tiny_model

from openeo_cloudmask.backend_plugin import apply_neighborhood, cloud_detection, cloud_mask
from openeo_cloudmask.backend_plugin.errors import OpenEOProcessError
from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph
from openeo_cloudmask.udf import cloud_mask as engine

REPO = Path(__file__).resolve().parent.parent
UDF_CODE = (REPO / "udf" / "cloud_mask.py").read_text()


def demo_cube(dates: int = 3, size: int = 256) -> xr.DataArray:
    """A (t, bands, y, x) uint16 cube: the seeded demo scene for seeds 1..dates, on one grid."""
    from openeo_cloudmask.demo_scene import make_demo_scene

    scenes = [make_demo_scene(seed=seed, size=size).to_dataarray() for seed in range(1, dates + 1)]
    frames = [s.assign_coords(x=scenes[0].x, y=scenes[0].y) for s in scenes]
    cube = xr.concat(frames, dim="t")
    return cube.assign_coords(t=np.array([f"2024-06-{1 + 5 * i:02d}" for i in range(dates)], dtype="datetime64[ns]"))


def no_compute(*args, **kwargs):
    raise AssertionError("something was computed before validation finished")


def graph(process_id: str, **arguments) -> dict:
    args = {"data": {"from_parameter": "data"}, **arguments}
    return {"process_graph": {"node1": {"process_id": process_id, "arguments": args, "result": True}}}


@pytest.fixture(scope="session")
def registry(tiny_model_dir):
    return build_registry(model_dir=str(tiny_model_dir), chunk_px=96)


@pytest.fixture(scope="session")
def cube() -> xr.DataArray:
    return demo_cube()


# --------------------------------------------------------------------------- registration and specs


def test_import_builds_nothing():
    code = (
        "import sys, openeo_cloudmask.backend_plugin.registry, openeo_cloudmask.backend_plugin.openeo_driver_plugin;"
        "print(any(m.startswith(('openeo_processes_dask.process_implementations', 'openeo.local', 'openeo_driver', "
        "'onnxruntime')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("module", [cloud_mask, cloud_detection, apply_neighborhood])
def test_spec_is_a_valid_openeo_process(module):
    import jsonschema

    spec = module.load_spec()
    for key in ("id", "summary", "description", "categories", "parameters", "returns", "exceptions"):
        assert key in spec, key
    assert module.SPEC_PATH.stem == spec["id"]
    for parameter in spec["parameters"]:
        assert {"name", "description", "schema"} <= set(parameter)
        schemas = parameter["schema"] if isinstance(parameter["schema"], list) else [parameter["schema"]]
        for schema in schemas:
            jsonschema.Draft7Validator.check_schema(schema)
        if parameter.get("optional"):
            assert "default" in parameter, parameter["name"]


def test_build_registry_has_standard_and_our_processes(registry):
    for process_id in ("cloud_mask", "cloud_detection", "apply_neighborhood", "run_udf", "reduce_dimension", "median", "mask"):
        assert registry[process_id].implementation is not None, process_id


def test_install_into_local_connection(tiny_model_dir):
    from openeo_cloudmask.backend_plugin.registry import install_into_local_connection

    registry = install_into_local_connection(model_dir=str(tiny_model_dir))
    from openeo.local.processing import PROCESS_REGISTRY

    assert registry is PROCESS_REGISTRY
    assert PROCESS_REGISTRY["cloud_mask"].spec["id"] == "cloud_mask"


# --------------------------------------------------------------------------- cloud_mask: lazy, same as the engine


def test_cloud_mask_is_lazy_and_equals_the_engine(registry, cube, tiny_context):
    with dask.config.set(scheduler=no_compute):
        result = run_process_graph(graph("cloud_mask", model=TINY_MODEL_ID), registry, {"data": cube.chunk(x=100, y=100)})
    assert isinstance(result.data, dask.array.Array)
    assert result.dims == cube.dims and list(result.bands.values) == ["cloud_mask"]
    # bit-identical: every chunk carries the card's overlap as halo (see predict_probabilities)
    np.testing.assert_array_equal(result.values, engine.mask_cube(cube, tiny_context).values)
    np.testing.assert_array_equal(result.x.values, cube.x.values)
    np.testing.assert_array_equal(result.t.values, cube.t.values)


@pytest.mark.parametrize("output,buffer", [("probabilities", 0), ("cloud_detection", 0), ("cloud_detection", 60), ("classes", 60)])
def test_cloud_mask_outputs_and_buffer_match_the_engine(registry, cube, tiny_context, output, buffer):
    result = run_process_graph(
        graph("cloud_mask", model=TINY_MODEL_ID, output=output, buffer=buffer), registry, {"data": cube.chunk(x=100, y=100)}
    )
    expected = engine.mask_cube(cube, {**tiny_context, "output": output, "buffer_m": buffer})
    assert list(result.bands.values) == list(expected.bands.values)
    if output == "classes":
        assert (result.values != expected.values).mean() <= 1e-4
    else:
        np.testing.assert_allclose(result.values, expected.values, atol=1e-5)


def test_cloud_detection_process(registry, cube, tiny_context):
    result = run_process_graph(
        graph("cloud_detection", method=TINY_MODEL_ID, options={"processing_level": "L2A"}), registry, {"data": cube}
    )
    assert list(result.bands.values) == ["cloud", "shadow"]
    values = result.values
    expected = engine.mask_cube(cube, {**tiny_context, "output": "cloud_detection"}).values
    np.testing.assert_allclose(values, expected, atol=1e-5)
    valid = values[np.isfinite(values)]
    assert valid.min() >= 0 and valid.max() <= 1 + 1e-6  # cloud = p(cloud) + p(semi) can round to 1.0000001
    assert np.isnan(values).any()  # the demo scene's orbit edge is missing -> no-data


def test_model_session_is_created_once_not_per_chunk(registry, cube):
    engine.load_model.cache_clear()
    before = engine.SESSION_LOADS["count"]
    result = run_process_graph(graph("cloud_mask", model=TINY_MODEL_ID), registry, {"data": cube.chunk(x=64, y=64)})
    assert result.data.npartitions >= 12
    assert engine.SESSION_LOADS["count"] == before  # building the graph reads the card only
    result.compute(scheduler="threads", num_workers=2)
    assert engine.SESSION_LOADS["count"] == before + 1


# --------------------------------------------------------------------------- bad input, before compute


def expect_error(code: str, registry, pg: dict, parameters: dict, *words):
    with dask.config.set(scheduler=no_compute), pytest.raises(OpenEOProcessError) as info:
        run_process_graph(pg, registry, parameters)
    assert info.value.code == code, info.value
    for word in words:
        assert word in info.value.message, info.value.message
    return info.value


def test_unknown_argument_is_rejected(registry, cube):
    expect_error("ProcessParameterUnsupported", registry, graph("cloud_mask", colour="red"), {"data": cube}, "colour", "buffer")


def test_unknown_graph_parameter_is_rejected(registry, cube):
    composite = json.loads((REPO / "process_graphs" / "cloud_free_composite.json").read_text())
    expect_error("ProcessParameterUnsupported", registry, composite, {"data": cube, "threshold": 3}, "threshold")


def test_undefined_parameter_reference_is_rejected(registry, cube):
    expect_error("ProcessGraphParameterMissing", registry, graph("cloud_mask", model={"from_parameter": "nope"}), {"data": cube}, "nope")


@pytest.mark.parametrize(
    "arguments,parameter",
    [
        ({"processing_level": "L3"}, "processing_level"),
        ({"output": "mask"}, "output"),
        ({"buffer": -10}, "buffer"),
        ({"radiometric_offset": "1000"}, "radiometric_offset"),
        ({"model": ""}, "model"),
    ],
)
def test_wrong_values_fail_schema_validation(registry, cube, arguments, parameter):
    error = expect_error("ProcessParameterInvalid", registry, graph("cloud_mask", **arguments), {"data": cube}, parameter)
    assert "cloud_mask" in error.message


def test_wrong_value_from_a_graph_parameter_fails_at_run_time_before_compute(registry, cube):
    pg = graph("cloud_mask", model=TINY_MODEL_ID, processing_level={"from_parameter": "level"})
    expect_error("ProcessParameterInvalid", registry, pg, {"data": cube.chunk(x=64, y=64), "level": "L9"}, "L9")


def test_wrong_band_set(registry, cube):
    three = cube.sel(bands=["B02", "B03", "B04"]).chunk(x=64, y=64)
    error = expect_error("ProcessParameterInvalid", registry, graph("cloud_mask", model=TINY_MODEL_ID), {"data": three}, "B08", "data")
    assert error.engine_code == "InvalidInput"


def test_cube_without_bands_dimension(registry, cube):
    flat = cube.isel(bands=0, drop=True).chunk(x=64, y=64)
    expect_error("ProcessParameterInvalid", registry, graph("cloud_mask", model=TINY_MODEL_ID), {"data": flat}, "bands")


def test_l2a_bands_contradict_l1c(registry, cube):
    scl = xr.concat([cube, cube.isel(bands=[0]).assign_coords(bands=["SCL"])], dim="bands")
    pg = graph("cloud_mask", model=TINY_MODEL_ID, processing_level="L1C")
    expect_error("ProcessParameterInvalid", registry, pg, {"data": scl}, "SCL")


def test_unknown_model_is_an_operator_error(registry, cube):
    expect_error("ModelUnavailable", registry, graph("cloud_mask", model="no-such-model"), {"data": cube}, "no-such-model")


def test_unknown_process(registry, cube):
    expect_error("ProcessUnsupported", registry, graph("cloud_masq"), {"data": cube}, "cloud_masq")


# --------------------------------------------------------------------------- apply_neighborhood + run_udf

POSITION_UDF = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    # Every pixel gets the position of the neighborhood (with its overlap) it was computed in.
    return cube * 0 + float(cube.x.values[0]) + 1000.0 * float(cube.y.values[0])
"""


def neighborhood_graph(udf: str, size: int, overlap: int, context=None) -> dict:
    run = {
        "process_id": "run_udf",
        "arguments": {"data": {"from_parameter": "data"}, "udf": udf, "runtime": "Python", "context": {"from_parameter": "context"}},
        "result": True,
    }
    return graph(
        "apply_neighborhood",
        process={"process_graph": {"runudf1": run}},
        size=[{"dimension": "x", "value": size, "unit": "px"}, {"dimension": "y", "value": size, "unit": "px"}, {"dimension": "t", "value": None}],
        overlap=[{"dimension": "x", "value": overlap, "unit": "px"}, {"dimension": "y", "value": overlap, "unit": "px"}],
        context=context,
    )


def test_each_neighborhood_gets_its_own_udf_call_not_the_first_cached_one(registry):
    height, width, size, overlap = 70, 100, 32, 4
    cube = xr.DataArray(
        np.ones((2, 1, height, width), dtype=np.float32),
        dims=("t", "bands", "y", "x"),
        coords={"bands": ["B02"], "y": np.arange(height, dtype=float), "x": np.arange(width, dtype=float)},
    )
    result = run_process_graph(neighborhood_graph(POSITION_UDF, size, overlap), registry, {"data": cube})
    values = result.values
    # expected: chunk start minus the overlap (not below 0); the last chunk absorbs a sliver < overlap
    def starts(length):
        edges = list(range(0, length, size))
        if length - edges[-1] < overlap:
            edges.pop()
        out = np.zeros(length)
        for edge in edges:
            out[edge:] = max(edge - overlap, 0)
        return out

    expected = starts(width)[None, :] + 1000.0 * starts(height)[:, None]
    assert len(np.unique(values)) == len(set(starts(width))) * len(set(starts(height))) > 1
    np.testing.assert_array_equal(values[0, 0], expected)
    np.testing.assert_array_equal(values[1, 0], expected)


def test_apply_neighborhood_runs_the_cloud_mask_udf_like_the_engine(registry, cube, tiny_context):
    result = run_process_graph(neighborhood_graph(UDF_CODE, 64, 8, tiny_context), registry, {"data": cube})
    assert list(result.bands.values) == ["cloud_mask"]
    np.testing.assert_array_equal(result.values, engine.mask_cube(cube, tiny_context).values)


def test_negative_overlap(registry, cube, tiny_context):
    expect_error("ProcessParameterInvalid", registry, neighborhood_graph(UDF_CODE, 64, -8, tiny_context), {"data": cube}, "overlap")


def test_size_below_the_model_minimum(registry, cube, tiny_context):
    expect_error("ProcessParameterInvalid", registry, neighborhood_graph(UDF_CODE, 8, 2, tiny_context), {"data": cube}, "size", "16")


def test_udf_context_errors_before_compute(registry, cube, tiny_context):
    bad = {**tiny_context, "colour": "red"}
    expect_error("ProcessParameterInvalid", registry, neighborhood_graph(UDF_CODE, 64, 8, bad), {"data": cube}, "colour")


def test_udf_wrong_band_set_before_compute(registry, cube, tiny_context):
    three = cube.sel(bands=["B02", "B03", "B04"])
    expect_error("ProcessParameterInvalid", registry, neighborhood_graph(UDF_CODE, 64, 8, tiny_context), {"data": three}, "B08")


# --------------------------------------------------------------------------- the CDSE UDP (process_graphs/cloud_mask.json)


def _run_udp(udp: dict, registry, cube, tiny_model_dir, monkeypatch, tmp_path):
    """Run a UDP whose UDF finds the model in ./cloudmask_deps, as the backend's dependency archive provides it."""
    build_tiny_model(tmp_path / engine.ARCHIVE_FOLDER)
    monkeypatch.chdir(tmp_path)
    return run_process_graph(udp, registry, {"data": cube, "model": TINY_MODEL_ID})


def test_generated_udp_runs_through_our_apply_neighborhood(registry, cube, tiny_context, tiny_model_dir, monkeypatch, tmp_path):
    from udp_builders import build_test_udp

    card = json.loads((tiny_model_dir / f"{TINY_MODEL_ID}.json").read_text())
    doc = build_test_udp(card, archive_option="https://example.invalid/deps.zip#cloudmask_deps")
    result = _run_udp(doc, registry, cube, tiny_model_dir, monkeypatch, tmp_path)
    np.testing.assert_array_equal(result.values, engine.mask_cube(cube, tiny_context).values)


def test_committed_udp_runs_through_our_apply_neighborhood(registry, cube, tiny_context, tiny_model_dir, monkeypatch, tmp_path):
    path = REPO / "process_graphs" / "cloud_mask.json"
    doc = json.loads(path.read_text())
    result = _run_udp(doc, registry, cube, tiny_model_dir, monkeypatch, tmp_path)
    expected = engine.mask_cube(cube, tiny_context).values
    # the UDP's size/overlap come from the real model's card; the tiny model's halo (8 px) fits in any overlap >= 8
    assert (result.values != expected).mean() <= 1e-4


def test_neighborhood_size_in_metres_equals_pixels(registry, cube, tiny_context):
    metres = neighborhood_graph(UDF_CODE, 64, 8, tiny_context)
    arguments = metres["process_graph"]["node1"]["arguments"]
    arguments["size"][:2] = [{"dimension": d, "value": 640, "unit": "m"} for d in ("x", "y")]
    arguments["overlap"] = [{"dimension": d, "value": 80, "unit": "m"} for d in ("x", "y")]
    pixels = run_process_graph(neighborhood_graph(UDF_CODE, 64, 8, tiny_context), registry, {"data": cube})
    result = run_process_graph(metres, registry, {"data": cube})
    assert result.data.chunks == pixels.data.chunks
    np.testing.assert_array_equal(result.values, pixels.values)


@pytest.mark.parametrize(
    "change,parameter",
    [
        (lambda a: a["process"]["process_graph"]["runudf1"]["arguments"].update(runtime="R"), "runtime"),
        (lambda a: a["size"].append({"dimension": "z", "value": 4}), "size"),
        (lambda a: a["overlap"].append({"dimension": "t", "value": 1}), "overlap"),
        (lambda a: a["size"].__setitem__(0, {"dimension": "x", "value": 64.5, "unit": "px"}), "size"),
    ],
)
def test_bad_neighborhoods(registry, cube, tiny_context, change, parameter):
    pg = neighborhood_graph(UDF_CODE, 64, 8, tiny_context)
    change(pg["process_graph"]["node1"]["arguments"])
    expect_error("ProcessParameterInvalid", registry, pg, {"data": cube}, parameter)


# --------------------------------------------------------------------------- issue 20: one spec, thin doors


def test_cloud_mask_spec_takes_its_defaults_from_the_engine():
    raw = json.loads(cloud_mask.SPEC_PATH.read_text())
    assert not any("default" in p for p in raw["parameters"]), "cloud_mask.json must not repeat the engine's defaults"
    spec = cloud_mask.load_spec()
    defaults = {p["name"]: p["default"] for p in spec["parameters"] if p.get("optional")}
    assert defaults == {name: engine.CONTEXT_DEFAULTS[key] for name, key in cloud_mask.CONTEXT_KEYS.items()}
    assert [p["name"] for p in spec["parameters"]] == ["data", *cloud_mask.CONTEXT_KEYS]


@pytest.mark.parametrize(
    ("process_id", "arguments", "parameter"),
    [
        ("cloud_mask", {"buffer": {"from_parameter": "value"}}, "buffer"),
        ("cloud_mask", {"output": {"from_parameter": "value"}}, "output"),
        ("cloud_detection", {"method": TINY_MODEL_ID, "options": {"buffer": {"from_parameter": "value"}}}, "options"),
        ("cloud_detection", {"method": {"from_parameter": "value"}}, "method"),
    ],
)
def test_engine_errors_name_the_parameter_by_their_key(registry, cube, process_id, arguments, parameter):
    """Values that pass the schema (they arrive through a graph parameter) but not the engine: named by the error's key."""
    value = {"buffer": -3, "output": "mask", "options": -3, "method": "no-such-model"}[parameter]
    arguments = {"model": TINY_MODEL_ID, **arguments} if process_id == "cloud_mask" else arguments
    code = "ModelUnavailable" if parameter == "method" else "ProcessParameterInvalid"
    error = expect_error(code, registry, graph(process_id, **arguments), {"data": cube, "value": value})
    if code == "ProcessParameterInvalid":
        assert error.parameter == parameter


def test_install_into_local_connection_replaces_the_eager_mask(tiny_model_dir):
    from openeo.local.processing import PROCESS_REGISTRY

    from openeo_cloudmask.backend_plugin.registry import install_into_local_connection

    install_into_local_connection(model_dir=str(tiny_model_dir))
    data = xr.DataArray(dask.array.ones((2, 4, 4), chunks=2), dims=("t", "y", "x"))
    mask = xr.DataArray(dask.array.zeros((2, 4, 4), chunks=2), dims=("t", "y", "x"))
    with dask.config.set(scheduler=no_compute):
        masked = PROCESS_REGISTRY["mask"].implementation(data=data, mask=mask)
    assert isinstance(masked.data, dask.array.Array)
    np.testing.assert_array_equal(masked.values, np.ones((2, 4, 4)))


@pytest.mark.parametrize("output", ["classes", "probabilities"])
def test_cloud_mask_process_without_t_and_smaller_than_its_halo(registry, cube, tiny_context, output):
    small = cube.isel(t=0, drop=True, y=slice(0, 5), x=slice(0, 3))
    result = run_process_graph(graph("cloud_mask", model=TINY_MODEL_ID, output=output), registry, {"data": small})
    assert result.dtype == engine.parse_context({"output": output}).dtype
    np.testing.assert_array_equal(result.values, engine.mask_cube(small, {**tiny_context, "output": output}).values)
