"""The three ways docs/CDSE.md gives to run the mask on CDSE, each run offline through our own processes.

1. published to the user's account: the graph calls ``cloud_mask`` in namespace ``user``, which a backend
   resolves to the UDP ``publish`` stored (the dry-run JSON, ``tests/driver/test_publish.py`` shows it is
   stored unchanged);
2. the namespace URL once released: the same call with the APEx URL, resolved to the committed UDP;
3. the self-contained UDF inline in ``apply_neighborhood``.

Each graph is built by the client code the docs point at, then executed with openeo-pg-parser-networkx, our
``apply_neighborhood`` and ``run_udf`` (``load_collection`` serves a synthetic cube), and must equal the engine
bit for bit. The real model is the one inside the UDF code.
"""

import json

import numpy as np
import pytest
import xarray as xr

from openeo_cloudmask.client_workflows import cloud_mask_inline, cloud_mask_udp, job_options, load_sentinel2
from openeo_cloudmask.release import publish, settings, udp_build
from openeo_cloudmask.udf import cloud_mask as engine


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(21)
    ny, nx = 260, 300
    values = rng.integers(150, 6500, size=(2, 4, ny, nx)).astype(np.uint16)
    values[:, :, 100:160, 120:200] = 7000  # a bright block: cloud among noise
    return xr.DataArray(values, dims=("t", "bands", "y", "x"), coords={
        "t": np.array(["2023-06-03", "2023-06-13"], dtype="datetime64[ns]"), "bands": ["B02", "B03", "B04", "B08"],
        "y": 5_650_000.0 - 10 * np.arange(ny), "x": 550_000.0 + 10 * np.arange(nx)})


@pytest.fixture(scope="module")
def stored_udp(tmp_path_factory):
    """What path 1 stores: the JSON ``openeo-cloudmask publish --dry-run`` writes."""
    path = tmp_path_factory.mktemp("publish") / "cloud_mask.json"
    assert publish.main(["--dry-run", "--udp-output", str(path)]) == 0
    return json.loads(path.read_text())


def run_offline(graph: dict, cube: xr.DataArray, namespaces: dict, monkeypatch, tmp_path) -> xr.DataArray:
    """Execute ``graph``: load_collection serves ``cube``, a namespaced ``cloud_mask`` runs the UDP it names."""
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask import specs
    from openeo_processes_dask.process_implementations.core import process

    from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph

    monkeypatch.chdir(tmp_path)  # no model files around: the UDF uses the model in its own code
    registry = build_registry()
    registry["load_collection"] = Process(spec=specs.load_collection, implementation=process(lambda **kwargs: cube))
    calls = [node for node in graph.values() if node["process_id"] == "cloud_mask"]
    for node in calls:
        document = namespaces[node["namespace"]]  # what the backend looks up for this namespace
        registry["cloud_mask"] = Process(spec=document, implementation=process(
            lambda data, document=document, **kw: run_process_graph(document, registry, {"data": data, **kw})))
    result = run_process_graph(graph, registry)
    return result.compute() if hasattr(result, "compute") else result


def assert_engine_result(result: xr.DataArray, cube: xr.DataArray) -> None:
    expected = engine.mask_cube(cube, {"processing_level": "L2A"})
    np.testing.assert_array_equal(np.asarray(result.transpose(*expected.dims).values), expected.values)


@pytest.mark.slow
def test_path_1_published_to_the_users_account(cube, stored_udp, monkeypatch, tmp_path):
    graph = cloud_mask_udp(load_sentinel2(), processing_level="L2A").flat_graph()
    assert [n["namespace"] for n in graph.values() if n["process_id"] == "cloud_mask"] == ["user"]
    assert stored_udp["default_job_options"] == job_options()  # printed by publish: a stored UDP keeps none
    assert_engine_result(run_offline(graph, cube, {"user": stored_udp}, monkeypatch, tmp_path), cube)


@pytest.mark.slow
def test_path_2_the_namespace_url_once_released(cube, monkeypatch, tmp_path):
    graph = cloud_mask_udp(load_sentinel2(), namespace=settings.udp_namespace_url(), processing_level="L2A").flat_graph()
    released = json.loads(settings.UDP_PATH.read_text())  # what the URL serves (the APEx copy of this file)
    assert settings.udp_namespace_url() == settings.APEX_UDP_URL
    assert_engine_result(run_offline(graph, cube, {settings.APEX_UDP_URL: released}, monkeypatch, tmp_path), cube)


@pytest.mark.slow
def test_path_3_the_udf_inline(cube, monkeypatch, tmp_path):
    size, overlap = udp_build.neighborhood_window(udp_build.load_card())
    graph = cloud_mask_inline(load_sentinel2(), size, overlap, processing_level="L2A").flat_graph()
    (run_udf,) = [n for node in graph.values() if node["process_id"] == "apply_neighborhood"
                  for n in node["arguments"]["process"]["process_graph"].values()]
    assert run_udf["arguments"]["udf"] == udp_build.udf_code(json.loads(settings.UDP_PATH.read_text()))
    assert len(json.dumps(graph).encode()) < udp_build.MAX_UDP_BYTES  # the request carries the model
    assert_engine_result(run_offline(graph, cube, {}, monkeypatch, tmp_path), cube)
