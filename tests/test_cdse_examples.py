"""The CDSE client examples build their process graphs offline, and the graphs match the committed ones.

Regenerate ``examples/expected/*.json`` after an intended change with
``UPDATE_EXPECTED=1 python -m pytest tests/test_cdse_examples.py`` and review the diff.
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from openeo_cloudmask import udp
from openeo_cloudmask.client_workflows import job_options, self_contained_udf
from openeo_cloudmask.release import settings, udp_build
from openeo_cloudmask.udf import cloud_mask as engine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = EXAMPLES / "expected"
NAMES = ["cdse_cloud_mask", "cdse_monthly_composite", "cdse_inline_udf", "cdse_batch_job"]
UDF_PLACEHOLDER = "<the self-contained UDF of process_graphs/cloud_mask.json>"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def offline_document(name: str) -> dict:
    """The graph (or, for the batch job, the POST /jobs body) an example builds without a connection."""
    module = load_example(name)
    cube = module.build()
    return module.job_request(cube) if hasattr(module, "job_request") else cube.flat_graph()


def run_udf_nodes(graph: dict):
    for node in graph.values():
        if node["process_id"] == "run_udf":
            yield node
        for value in node["arguments"].values():
            if isinstance(value, dict) and "process_graph" in value:
                yield from run_udf_nodes(value["process_graph"])


def graph_of(document: dict) -> dict:
    return document["process"]["process_graph"] if "process" in document else document


def normalised(document: dict) -> dict:
    """The UDF source is checked on its own (it changes with every engine edit); the rest is compared whole."""
    document = json.loads(json.dumps(document))
    for node in run_udf_nodes(graph_of(document)):
        assert node["arguments"]["udf"] == self_contained_udf(), "the inline UDF must be the UDP's, verbatim"
        node["arguments"]["udf"] = UDF_PLACEHOLDER
    return document


@pytest.mark.parametrize("name", NAMES)
def test_example_graph_matches_expected(name):
    document = normalised(offline_document(name))
    path = EXPECTED / f"{name}.json"
    if os.environ.get("UPDATE_EXPECTED"):
        path.write_text(json.dumps(document, indent=2) + "\n")
    assert path.is_file(), f"{path} missing: run UPDATE_EXPECTED=1 python -m pytest {__file__}"
    assert document == json.loads(path.read_text()), (
        f"{name}.py builds a different graph than {path.name}; if intended, regenerate with UPDATE_EXPECTED=1"
    )


def test_examples_call_the_published_udp():
    for name in ("cdse_cloud_mask", "cdse_monthly_composite", "cdse_batch_job"):
        calls = [n for n in graph_of(offline_document(name)).values() if n["process_id"] == "cloud_mask"]
        assert len(calls) == 1 and calls[0]["namespace"] == "user", name
        assert calls[0]["arguments"]["processing_level"] == "L2A"


def test_print_flag_prints_the_offline_graph(capsys):
    assert load_example("cdse_cloud_mask").main(["--print"]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert [n["process_id"] for n in graph.values()] == ["load_collection", "cloud_mask"]


def test_inline_example_matches_the_udp_contract():
    module = load_example("cdse_inline_udf")
    graph = module.build().flat_graph()
    (node,) = [n for n in graph.values() if n["process_id"] == "apply_neighborhood"]
    (run_udf,) = run_udf_nodes(graph)
    assert set(run_udf["arguments"]["context"]) <= set(engine.CONTEXT_DEFAULTS)
    assert {"dimension": "t", "value": None} in node["arguments"]["size"]
    assert module.JOB_OPTIONS == job_options()
    card_path = settings.MODELS_DIR / f"{module.MODEL}.json"
    if card_path.is_file():
        assert (module.SIZE, module.OVERLAP) == udp_build.neighborhood_window(json.loads(card_path.read_text())), (
            "examples/cdse_inline_udf.py SIZE/OVERLAP differ from the model card's recommendation"
        )


def test_batch_job_options_are_at_least_the_udps():
    module = load_example("cdse_batch_job")
    defaults = json.loads(settings.UDP_PATH.read_text())["default_job_options"]
    mib = lambda text: int(text.rstrip("m"))  # noqa: E731
    assert mib(module.JOB_OPTIONS["python-memory"]) >= mib(defaults["python-memory"])
    assert module.JOB_OPTIONS["udf-dependency-archives"] == defaults["udf-dependency-archives"]


# --------------------------------------------------------------------------- the composite, end to end, locally


@pytest.mark.shared_data
def test_monthly_composite_runs_locally(shared_data, tiny_model_dir, tmp_path, monkeypatch):
    """The composite example's graph on a shared 30-date cube: load_collection serves the cube, the namespaced
    ``cloud_mask`` call runs the UDP document (built from the tiny card), the rest is openeo-processes-dask."""
    import shutil
    import time

    import numpy as np
    import xarray as xr

    from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask.process_implementations.core import process

    from tiny_model import TINY_MODEL_ID
    from udp_builders import build_test_udp

    ds = xr.open_dataset(shared_data / "s2cloudmask_wright_stack30.nc")
    cube = ds["reflectance"].sel(bands=["B02", "B03", "B04", "B08"]).astype(np.float32)
    # The stack's dates are unknown (integer t): give it one every 6 days from April, i.e. six calendar months.
    cube = cube.assign_coords(t=np.datetime64("2023-04-01") + 6 * np.arange(cube.sizes["t"]).astype("timedelta64[D]"),
                              y=5_000_000.0 - 10.0 * cube.y, x=700_000.0 + 10.0 * cube.x)
    card = udp_build.load_card(TINY_MODEL_ID, tiny_model_dir)
    document = build_test_udp(card, archive_option=f"https://example.invalid/deps.zip#{engine.ARCHIVE_FOLDER}")
    shutil.copytree(tiny_model_dir, tmp_path / engine.ARCHIVE_FOLDER / "models")  # the unpacked archive
    monkeypatch.chdir(tmp_path)

    registry = build_registry()
    from openeo_processes_dask import specs

    registry["load_collection"] = Process(spec=specs.load_collection, implementation=process(lambda **kwargs: cube))
    registry["cloud_mask"] = Process(  # the namespaced call resolves to the UDP document
        spec=document, implementation=process(lambda data, **kw: run_process_graph(document, registry, {"data": data, **kw})))

    start = time.perf_counter()
    result = run_process_graph(offline_document("cdse_monthly_composite"), registry)
    values = result.compute() if hasattr(result, "compute") else result
    seconds = time.perf_counter() - start
    print(f"local monthly composite: {seconds:.1f} s for {dict(cube.sizes)}")
    assert values.sizes["t"] == 6 and list(values.bands.values) == ["B02", "B03", "B04", "B08"]

    # The same composite computed by hand from the engine's mask.
    mask = engine.mask_cube(cube, {"model": TINY_MODEL_ID, "model_dir": str(tiny_model_dir)})
    expected = cube.where(mask.sel(bands="cloud_mask") == 1).resample(t="MS").median()
    got = values.transpose(*expected.dims).values
    # Identical: the local chunks carry the card's overlap, so their masks equal the whole-cube mask.
    np.testing.assert_allclose(got, expected.values, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected.values))
