"""The generated ``cloud_mask`` UDP: drift from its sources, structure, memory settings, and the door to the UDF."""

import json
import math

import numpy as np
import pytest
import xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

from openeo_cloudmask import udp as body
from openeo_cloudmask.release import settings, udp_build
from openeo_cloudmask.udf import cloud_mask as engine
from tiny_model import TINY_MODEL_ID, expected_codes
from udp_builders import build_test_udp, fake_memory_record, self_contained_udp  # noqa: F401 (re-exported)


@pytest.fixture(scope="module")
def tiny_card(tiny_model_dir):
    return udp_build.load_card(TINY_MODEL_ID, tiny_model_dir)


@pytest.fixture(scope="module")
def tiny_udp(tiny_card, tiny_model_dir):
    return self_contained_udp(tiny_card, tiny_model_dir)


@pytest.fixture(autouse=True)
def no_release_url(monkeypatch):
    monkeypatch.delenv(settings.RELEASE_URL_ENV, raising=False)


# --------------------------------------------------------------------------- drift


def test_committed_udp_matches_its_sources():
    """process_graphs/cloud_mask.json == what `make udp` makes from the spec, the UDF, the model and the memory record."""
    expected = udp_build.render(udp_build.generate())
    assert settings.UDP_PATH.is_file(), "process_graphs/cloud_mask.json is missing: run `make udp`"
    assert settings.UDP_PATH.read_text() == expected, (
        "process_graphs/cloud_mask.json is out of date with udf/cloud_mask.py, the spec, the model or the memory "
        "record: run `make udp` (after a new model or window: `make udp MEASURE=1`) and commit the result"
    )


def test_generator_fails_clearly_without_a_card(tmp_path, capsys):
    assert udp_build.main(["--models-dir", str(tmp_path), "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert f"{engine.DEFAULT_MODEL}.json" in err and "make udp" in err
    assert not (tmp_path / "x.json").exists()


def test_generator_refuses_a_stale_memory_record(tiny_model_dir, tiny_card, tmp_path, capsys):
    record = dict(fake_memory_record(tiny_card), onnx_sha256="0" * 64)
    (tmp_path / "memory.json").write_text(json.dumps(record))
    code = udp_build.main(["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir),
                           "--memory-record", str(tmp_path / "memory.json"), "--output", str(tmp_path / "udp.json")])
    assert code == 2
    assert "MEASURE=1" in capsys.readouterr().err


def test_generator_writes_then_checks(tiny_model_dir, tiny_card, tmp_path):
    (tmp_path / "memory.json").write_text(json.dumps(fake_memory_record(tiny_card)))
    common = ["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir),
              "--memory-record", str(tmp_path / "memory.json"), "--output", str(tmp_path / "udp.json")]
    assert udp_build.main(["--check", *common]) == 1  # nothing written yet
    assert udp_build.main(common) == 0
    assert udp_build.main(["--check", *common]) == 0
    code = udp_build.udf_code(json.loads((tmp_path / "udp.json").read_text()))
    assert code.startswith(body.udf_source().rstrip()) and f'EMBEDDED_MODELS[{TINY_MODEL_ID!r}]' in code


def test_archive_form_needs_a_real_release_url(tiny_model_dir, tiny_card, tmp_path, capsys, monkeypatch):
    (tmp_path / "memory.json").write_text(json.dumps(fake_memory_record(tiny_card)))
    common = ["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir), "--form", "archive",
              "--memory-record", str(tmp_path / "memory.json"), "--output", str(tmp_path / "udp.json")]
    assert udp_build.main(common) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert settings.RELEASE_URL_ENV in line and "self-contained" in line
    monkeypatch.setenv(settings.RELEASE_URL_ENV, "https://github.com/OWNER/openeo-cloudmask/releases/download/v{version}")
    assert udp_build.main(common) == 2
    assert "not a real https URL" in capsys.readouterr().err
    monkeypatch.setenv(settings.RELEASE_URL_ENV, "https://example.test/cm/v{version}/")
    assert udp_build.main(common) == 0
    written = json.loads((tmp_path / "udp.json").read_text())
    archive = f"https://example.test/cm/v{settings.__version__}/{settings.archive_name(tiny_card)}#{engine.ARCHIVE_FOLDER}"
    assert written["default_job_options"]["udf-dependency-archives"] == [archive]
    assert udp_build.udf_code(written) == body.udf_source()
    assert settings.udp_namespace_url() == f"https://example.test/cm/v{settings.__version__}/cloud_mask.json"


def test_namespace_url_without_a_release_is_the_apex_copy():
    assert settings.udp_namespace_url() == settings.APEX_UDP_URL
    assert settings.APEX_UDP_URL.startswith("https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/main/")


def test_no_generated_file_contains_the_placeholder():
    generated = sorted(settings.PROCESS_GRAPHS.rglob("*.json")) + sorted((settings.REPO / "examples" / "expected").glob("*.json"))
    assert settings.UDP_PATH in generated
    assert [str(path) for path in generated if "OWNER" in path.read_text()] == []


# --------------------------------------------------------------------------- structure


def test_parameters_are_the_process_spec(tiny_udp, tiny_card):
    spec = udp_build.load_process_spec()
    assert [p["name"] for p in tiny_udp["parameters"]] == [p["name"] for p in spec["parameters"]]
    for mine, theirs in zip(tiny_udp["parameters"], spec["parameters"]):
        assert mine["schema"] == theirs["schema"] and mine.get("optional") == theirs.get("optional"), mine["name"]
        expected_default = tiny_card["id"] if mine["name"] == "model" else theirs.get("default")
        assert mine.get("default") == expected_default, mine["name"]
    assert tiny_udp["id"] == spec["id"] and tiny_udp["returns"] == spec["returns"]


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
    refs = {v["from_parameter"] for v in args["context"].values()}
    assert refs == {p["name"] for p in tiny_udp["parameters"]} - {"data"}
    assert set(args["context"]) <= set(engine.CONTEXT_DEFAULTS)


def test_window_is_raised_to_cdse_minimum(tiny_card):
    card = json.loads(json.dumps(tiny_card))
    card["tiling"].update(recommended_chunk=16, min_tile_size=16, recommended_overlap=4)
    assert udp_build.neighborhood_window(card) == (udp_build.CDSE_MIN_UDF_SIZE, 4)


def test_default_job_options(tiny_udp, tiny_card):
    options = tiny_udp["default_job_options"]
    # (240 MiB + 72 x 14.5 MiB) x 1.25 = 1605 MiB at 73 dates, rounded up to 256 MiB
    assert options["python-memory"] == "1792m"
    assert options["udf-dependency-archives"] == [engine.ONNX_DEPS_ARCHIVE]
    assert engine.ONNX_DEPS_ARCHIVE.endswith("/onnx_deps_python311.zip#onnx_deps")
    assert options["task-cpus"] == udp_build.TASK_CPUS and options["executor-cores"] == udp_build.EXECUTOR_CORES
    # onnxruntime's threads follow task-cpus: the self-contained UDF sets the engine's variable to it
    assert f"os.environ.setdefault(THREADS_ENV, '{options['task-cpus']}')" in udp_build.udf_code(tiny_udp)


def test_committed_memory_settings_keep_a_quarter_headroom():
    card = udp_build.load_card()
    record = udp_build.load_memory_record(card)
    limit = int(json.loads(settings.UDP_PATH.read_text())["default_job_options"]["python-memory"].rstrip("m"))
    peak = udp_build.peak_mib(record, udp_build.DESIGN_DATES)
    assert udp_build.DESIGN_DATES in [run["dates"] for run in record["runs"]], "measured at the promised date count"
    assert limit >= 1.25 * peak, (limit, peak)
    assert udp_build.max_dates(record, limit) >= udp_build.DESIGN_DATES


def test_docs_memory_table_is_the_measured_one():
    record = udp_build.load_memory_record(udp_build.load_card())
    docs = (settings.REPO / "docs" / "CDSE.md").read_text()
    assert udp_build.memory_table(record) in docs, "docs/CDSE.md's memory table is stale: paste udp_build.memory_table()"
    limit = udp_build.python_memory_mib(record)
    assert f"`python-memory` {limit}m" in docs and f'"python-memory": "{limit}m"' in docs
    per_date = udp_build.per_date_mib(record)
    assert f"about {per_date:.1f} MiB per date" in docs
    assert f"up to {udp_build.max_dates(record, limit)} dates per chunk" in docs
    assert f"add {math.ceil(per_date * udp_build.MEMORY_MARGIN)}m per extra date" in docs
    assert "0.9 GB" not in docs


def test_committed_udp_is_self_contained_and_small():
    text = settings.UDP_PATH.read_text()
    assert len(text.encode()) < udp_build.MAX_UDP_BYTES
    card = udp_build.load_card()
    code = udp_build.udf_code(json.loads(text))
    assert f"EMBEDDED_MODELS[{card['id']!r}]" in code
    # the PEP 723 block stays first, the fallback where a backend installs a script's dependencies
    assert code.startswith("# /// script\n") and '"onnxruntime"' in code.split("# ///\n", 2)[1]


def test_oversized_udp_is_refused_at_build(tiny_udp):
    big = dict(tiny_udp, description="x" * udp_build.MAX_UDP_BYTES)
    with pytest.raises(settings.ReleaseError, match="over the 2 MiB openEO request limit"):
        udp_build.render(big)


def test_processes_never_import_release_code():
    import subprocess
    import sys

    code = ("import sys\n"
            "from openeo_cloudmask.backend_plugin import registry, openeo_driver_plugin, cloud_mask\n"
            "import openeo_cloudmask.udp, openeo_cloudmask.udf.cloud_mask\n"
            "registry.build_registry()\n"
            "print(sorted(m for m in sys.modules if m.startswith('openeo_cloudmask.release')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------- the door: UDP -> run_udf -> engine


def test_udp_runs_the_udf_with_its_defaults(tiny_udp, tmp_path, monkeypatch):
    """What a backend does with the UDP's run_udf node: the udf string (model inside), the context from the defaults."""
    monkeypatch.chdir(tmp_path)  # no model files anywhere near: the UDF loads the model from its own code
    monkeypatch.setenv(engine.THREADS_ENV, "1")
    context = udp_build.udf_context(tiny_udp)
    assert context == {"processing_level": "L2A", "radiometric_offset": 0, "output": "classes", "buffer_m": 0,
                       "model": TINY_MODEL_ID}
    levels = np.array([200.0, 1000.0, 3000.0, 6000.0], dtype=np.float32)  # shadow, clear, semi, cloud
    dn = np.repeat(levels, 20)[None, None, :, None] * np.ones((2, 4, 80, 24), dtype=np.float32)
    cube = xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={"bands": ["B02", "B03", "B04", "B08"]})
    out = run_udf_code(udp_build.udf_code(tiny_udp), UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    result = out.get_datacube_list()[0].get_array()
    assert result.dims == ("t", "bands", "y", "x") and list(result.bands.values) == ["cloud_mask"]
    expected = expected_codes(dn[0])
    assert set(np.unique(expected)) == {1, 2, 3, 4}
    inner = (slice(None), 0, slice(None), slice(None))
    rows = [r for r in range(80) if r % 20 not in (0, 1, 18, 19)]  # away from the 5x5 smoothing at level edges
    np.testing.assert_array_equal(result.values[inner][:, rows], np.broadcast_to(expected[rows], (2, len(rows), 24)))


def test_udp_through_our_apply_neighborhood_is_bit_identical_to_the_engine(tiny_udp, tiny_context, tmp_path, monkeypatch):
    from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(engine.THREADS_ENV, "1")
    rng = np.random.default_rng(3)
    n = 150
    cube = xr.DataArray(rng.integers(100, 7000, size=(2, 4, n, n + 20)).astype(np.uint16), dims=("t", "bands", "y", "x"),
                        coords={"t": np.array(["2024-05-01", "2024-05-11"], dtype="datetime64[ns]"),
                                "bands": ["B02", "B03", "B04", "B08"],
                                "y": 5_000_000.0 - 10 * np.arange(n), "x": 600_000.0 + 10 * np.arange(n + 20)})
    result = run_process_graph(tiny_udp, build_registry(), {"data": cube})
    expected = engine.mask_cube(cube, tiny_context)
    np.testing.assert_array_equal(result.transpose(*expected.dims).values, expected.values)


def test_embedded_model_with_a_wrong_sha256_is_one_line(tiny_udp):
    code = udp_build.udf_code(tiny_udp)
    head, tail = code.split('"onnx": "', 1)
    tampered = head + '"onnx": "' + ("A" if tail[100] != "A" else "B").join([tail[:100], tail[101:]])
    cube = xr.DataArray(np.full((4, 40, 40), 1000, dtype=np.uint16), dims=("bands", "y", "x"),
                        coords={"bands": ["B02", "B03", "B04", "B08"]})
    with pytest.raises(Exception) as caught:  # the UDF module's own ModelFileError class, not the package's
        run_udf_code(tampered, UdfData(datacube_list=[XarrayDataCube(cube)], user_context={"model": TINY_MODEL_ID}))
    assert type(caught.value).__name__ == "ModelFileError"
    message = str(caught.value)
    assert "\n" not in message and "sha256" in message and "embedded model" in message and "rebuild" in message


# --------------------------------------------------------------------------- the CLI door


def test_cli_publish_dry_run_writes_the_self_contained_udp(tmp_path, capsys):
    """`openeo-cloudmask publish --dry-run`: the UDP `make udp` builds, under 2 MiB, no backend and no login."""
    from openeo_cloudmask import cli

    target = tmp_path / "cloud_mask.json"
    assert cli.main(["publish", "--dry-run", "--udp-output", str(target)]) == 0
    assert "self-contained" in capsys.readouterr().out
    text = target.read_text()
    assert text == udp_build.render(udp_build.generate())  # == the committed file, by the drift test above
    assert len(text.encode()) < udp_build.MAX_UDP_BYTES and "OWNER" not in text
    assert f"EMBEDDED_MODELS[{engine.DEFAULT_MODEL!r}]" in udp_build.udf_code(json.loads(text))


def test_cli_publish_refusal_is_one_line(tmp_path, capsys):
    from openeo_cloudmask import cli

    assert cli.main(["publish", "--dry-run", "--models-dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("openeo-cloudmask: error:") and "make udp" in line
