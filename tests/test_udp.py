"""The generated ``cloud_mask`` UDP: drift from its sources, structure, and the door it opens to the UDF."""

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

from openeo_cloudmask import udp
from openeo_cloudmask.udf import cloud_mask as engine
from tiny_model import TINY_MODEL_ID, build_tiny_model, expected_codes


def fake_memory_record(card, peak=400.0, one_date=240.0, per_date=14.5):
    size, overlap = udp.neighborhood_window(card)
    return {"model": card["id"], "onnx_sha256": card["onnx_sha256"], "chunk_px": size + 2 * overlap,
            "dates": udp.MEASURE_DATES, "peak_rss_mib": peak, "peak_rss_mib_one_date": one_date, "per_date_mib": per_date}


@pytest.fixture(scope="module")
def tiny_card(tiny_model_dir):
    return udp.load_card(TINY_MODEL_ID, tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_udp(tiny_card):
    return udp.build_udp(tiny_card, udp.udf_source(), fake_memory_record(tiny_card), udp.archive_url(tiny_card, use_env=False))


# --------------------------------------------------------------------------- drift


def test_committed_udp_matches_its_sources(monkeypatch):
    """process_graphs/cloud_mask.json == what build_udp.py makes from udf/cloud_mask.py, the card and the memory record."""
    monkeypatch.delenv(udp.RELEASE_URL_ENV, raising=False)
    expected = udp.render(udp.generate(use_env=False))
    assert udp.UDP_PATH.is_file(), "process_graphs/cloud_mask.json is missing: run `make udp`"
    assert udp.UDP_PATH.read_text() == expected, (
        "process_graphs/cloud_mask.json is out of date with udf/cloud_mask.py, the model card or the memory record: "
        "run `make udp` (after a new model or window: `make udp MEASURE=1`) and commit the result"
    )


def test_generator_fails_clearly_without_a_card(tmp_path, capsys):
    assert udp.main(["--models-dir", str(tmp_path), "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert f"{udp.DEFAULT_MODEL}.json" in err and "make udp" in err
    assert not (tmp_path / "x.json").exists()


def test_generator_refuses_a_stale_memory_record(tiny_model_dir, tiny_card, tmp_path, capsys):
    record = dict(fake_memory_record(tiny_card), onnx_sha256="0" * 64)
    (tmp_path / "memory.json").write_text(json.dumps(record))
    code = udp.main(["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir),
                     "--memory-record", str(tmp_path / "memory.json"), "--output", str(tmp_path / "udp.json")])
    assert code == 2
    assert "MEASURE=1" in capsys.readouterr().err


def test_generator_writes_then_checks(tiny_model_dir, tiny_card, tmp_path, monkeypatch):
    monkeypatch.delenv(udp.RELEASE_URL_ENV, raising=False)
    (tmp_path / "memory.json").write_text(json.dumps(fake_memory_record(tiny_card)))
    common = ["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir),
              "--memory-record", str(tmp_path / "memory.json"), "--output", str(tmp_path / "udp.json")]
    assert udp.main(["--check", *common]) == 1  # nothing written yet
    assert udp.main(common) == 0
    assert udp.main(["--check", *common]) == 0
    text = (tmp_path / "udp.json").read_text()
    assert json.loads(text)["process_graph"]["cloudmask1"]["arguments"]["process"]["process_graph"]["runudf1"][
        "arguments"]["udf"] == udp.udf_source()


# --------------------------------------------------------------------------- structure


def test_parameters_have_schemas_and_defaults(tiny_udp, tiny_card):
    params = {p["name"]: p for p in tiny_udp["parameters"]}
    assert list(params) == ["data", "processing_level", "radiometric_offset", "output", "buffer", "model"]
    assert params["data"]["schema"] == {"type": "object", "subtype": "datacube"} and "default" not in params["data"]
    assert params["processing_level"]["default"] == "L2A" and params["processing_level"]["schema"]["enum"] == ["L2A", "L1C"]
    assert params["radiometric_offset"]["default"] == 0
    assert params["output"]["schema"]["enum"] == list(engine.OUTPUT_KINDS)
    assert params["buffer"]["default"] == 0 and params["buffer"]["schema"]["minimum"] == 0
    assert params["model"]["default"] == tiny_card["id"]
    assert all(p.get("optional") for name, p in params.items() if name != "data")


def test_body_is_apply_neighborhood_with_the_cards_chunk(tiny_udp, tiny_card):
    (node,) = tiny_udp["process_graph"].values()
    assert node["process_id"] == "apply_neighborhood" and node["result"] is True
    args = node["arguments"]
    window, overlap = tiny_card["tiling"]["recommended_chunk"], tiny_card["tiling"]["recommended_overlap"]
    assert args["size"] == [
        {"dimension": "x", "value": window, "unit": "px"},
        {"dimension": "y", "value": window, "unit": "px"},
        {"dimension": "t", "value": None},
    ]
    assert args["overlap"] == [
        {"dimension": "x", "value": overlap, "unit": "px"},
        {"dimension": "y", "value": overlap, "unit": "px"},
    ]
    run_udf = args["process"]["process_graph"]["runudf1"]
    assert run_udf["process_id"] == "run_udf" and run_udf["arguments"]["runtime"] == "Python"
    assert run_udf["arguments"]["context"] == {"from_parameter": "context"}
    # every UDP parameter but data reaches the UDF, under a key the UDF accepts
    refs = {v["from_parameter"] for v in args["context"].values()}
    assert refs == {p["name"] for p in tiny_udp["parameters"]} - {"data"}
    assert set(args["context"]) <= set(engine.CONTEXT_DEFAULTS)


def test_window_is_raised_to_cdse_minimum(tiny_card):
    card = json.loads(json.dumps(tiny_card))
    card["tiling"].update(recommended_chunk=16, min_tile_size=16, recommended_overlap=4)
    assert udp.neighborhood_window(card) == (udp.CDSE_MIN_UDF_SIZE, 4)


def test_default_job_options(tiny_udp, tiny_card):
    options = tiny_udp["default_job_options"]
    # (240 MiB + 72 x 14.5 MiB) x 1.25 = 1605 MiB for 73 dates, rounded up to 256 MiB
    assert options["python-memory"] == "1792m"
    assert udp.python_memory_mib(fake_memory_record(tiny_card, per_date=0)) == 512  # 400 x 1.25 -> 512
    (archive,) = options["udf-dependency-archives"]
    assert archive.endswith(f"/{udp.archive_name(tiny_card)}#{engine.ARCHIVE_FOLDER}")
    assert archive.startswith(udp.RELEASE_URL.format(version=udp.__version__))
    assert udp.ARCHIVE_FOLDER == engine.ARCHIVE_FOLDER


def test_release_url_is_one_setting(monkeypatch, tiny_card):
    monkeypatch.setenv(udp.RELEASE_URL_ENV, "https://example.test/cm/{version}/")
    assert udp.archive_url(tiny_card) == f"https://example.test/cm/{udp.__version__}/{udp.archive_name(tiny_card)}"
    assert udp.udp_namespace_url() == f"https://example.test/cm/{udp.__version__}/cloud_mask.json"
    assert udp.archive_url(tiny_card, use_env=False).startswith("https://github.com/OWNER/")


# --------------------------------------------------------------------------- the door: UDP -> run_udf -> engine


def test_udp_runs_the_udf_with_its_defaults(tiny_udp, tiny_model_dir, tmp_path, monkeypatch):
    """What a backend does with the UDP's run_udf node: the udf string, the context from the defaults."""
    deps = tmp_path / engine.ARCHIVE_FOLDER / "models"
    shutil.copytree(tiny_model_dir, deps)
    monkeypatch.chdir(tmp_path)  # udf-dependency-archives unpack into the UDF's working directory
    run_udf = tiny_udp["process_graph"]["cloudmask1"]["arguments"]["process"]["process_graph"]["runudf1"]
    context = udp.udf_context(tiny_udp)
    assert context == {"processing_level": "L2A", "radiometric_offset": 0, "output": "classes", "buffer_m": 0,
                       "model": TINY_MODEL_ID}
    levels = np.array([200.0, 1000.0, 3000.0, 6000.0], dtype=np.float32)  # shadow, clear, semi, cloud
    dn = np.repeat(levels, 20)[None, None, :, None] * np.ones((2, 4, 80, 24), dtype=np.float32)
    cube = xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={"bands": ["B02", "B03", "B04", "B08"]})
    out = run_udf_code(run_udf["arguments"]["udf"], UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    result = out.get_datacube_list()[0].get_array()
    assert result.dims == ("t", "bands", "y", "x") and list(result.bands.values) == ["cloud_mask"]
    expected = expected_codes(dn[0])
    assert set(np.unique(expected)) == {1, 2, 3, 4}
    inner = (slice(None), 0, slice(None), slice(None))
    rows = [r for r in range(80) if r % 20 not in (0, 1, 18, 19)]  # away from the 5x5 smoothing at level edges
    np.testing.assert_array_equal(result.values[inner][:, rows], np.broadcast_to(expected[rows], (2, len(rows), 24)))


@pytest.mark.slow
def test_measure_memory_reports_the_chunk(tiny_model_dir, tiny_card):
    record = udp.measure_memory(tiny_card, tiny_model_dir, dates=3, chunk_px=96)
    assert record["chunk_px"] == 96 and record["dates"] == 3 and record["onnx_sha256"] == tiny_card["onnx_sha256"]
    assert 0 < record["baseline_rss_mib"] <= record["peak_rss_mib"] < 4096
    assert record["input_mib"] == pytest.approx(3 * 4 * 96 * 96 * 4 / 2**20, abs=0.1)
