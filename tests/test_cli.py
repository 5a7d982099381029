"""The command line, called in-process the way ``openeo-cloudmask`` calls it: ``main([...])``.

Plumbing runs on the tiny test model (``--model tiny-test --model-dir ...``);
one slow test runs the demo with the real model once it exists. No test
touches the network: the s2cloudless download is replaced by a fake sdist.
"""

import io
import math
import os
import runpy
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.enums import Compression

from openeo_cloudmask import __version__, s2cloudless_scene, tiling
from openeo_cloudmask.cli import main
from openeo_cloudmask.demo_scene import make_demo_scene
from openeo_cloudmask.raster_io import write_stack
from openeo_cloudmask.udf.cloud_mask import THREADS_ENV, mask_cube, parse_context

REPO = Path(__file__).resolve().parent.parent
REAL_CARD = REPO / "models" / "cloudmask-s2-4band.json"
SIZE = 300  # larger than one 256 x 256 GeoTIFF tile, so tiling is visible


@pytest.fixture(scope="module")
def scene():
    return make_demo_scene(seed=11, size=SIZE)


@pytest.fixture
def tiny_args(tiny_model_dir):
    return ["--model", "tiny-test", "--model-dir", str(tiny_model_dir), "--quiet"]


@pytest.fixture
def scene_tif(tmp_path, scene):
    return write_stack(tmp_path / "scene.tif", scene.dn, scene.bands, scene.crs, scene.transform)


def whole_scene_mask(scene, tiny_context, **context):
    return mask_cube(scene.to_dataarray(), {**tiny_context, **context}).sel(bands="cloud_mask").values


def read_mask(path):
    with rasterio.open(path) as src:
        return src.read(1)


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("openeo-cloudmask: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


# --------------------------------------------------------------------------- basics


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"openeo-cloudmask {__version__}"


def test_python_dash_m_runs_the_same_main(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["openeo_cloudmask", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("openeo_cloudmask", run_name="__main__")
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "openeo-cloudmask: error:" in capsys.readouterr().err


def test_info_lists_versions_models_and_providers(tiny_model_dir, capsys):
    assert main(["info", "--model-dir", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("numpy", "xarray", "onnxruntime", "openeo", "openeo-cloudmask"):
        assert f"\n  {name} " in out
    assert "tiny-test v0.0.1  ok  bands B02,B03,B04,B08" in out
    assert "CPUExecutionProvider" in out


def test_info_reports_a_corrupt_model_as_corrupt(tiny_model_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tiny-test.json").write_text((tiny_model_dir / "tiny-test.json").read_text())
    onnx = bytearray((tiny_model_dir / "tiny-test.onnx").read_bytes())
    onnx[-1] ^= 0xFF  # one flipped bit: the card still validates, the file no longer matches it
    (broken / "tiny-test.onnx").write_bytes(bytes(onnx))
    (broken / "half-card.json").write_text('{"id": "half-card"}')
    assert main(["info", "--model-dir", str(broken)]) == 0
    lines = capsys.readouterr().out.splitlines()
    corrupt = [line for line in lines if line.startswith("  tiny-test v0.0.1")]
    assert len(corrupt) == 1 and ": corrupt: " in corrupt[0] and "sha256" in corrupt[0], lines
    assert " ok " not in corrupt[0]
    assert any(line.startswith("  half-card: invalid card") for line in lines), lines


def test_help_states_the_default_block_size_the_engine_gives(capsys):
    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    options = parse_context({})
    assert f"default: the largest block whose halo fits one engine window, {options.local_chunk(options.describe())} px for {options.model}" in text


def test_info_shows_the_onnxruntime_threads(monkeypatch, capsys):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert main(["info"]) == 0
    assert f"onnxruntime threads per process: 1 ({THREADS_ENV}=1)" in capsys.readouterr().out
    monkeypatch.delenv(THREADS_ENV)
    assert main(["info"]) == 0
    assert f"onnxruntime threads per process: every core ({THREADS_ENV}=unset)" in capsys.readouterr().out


def test_help_and_readme_describe_the_threads_variable_alike(capsys):
    assert main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    wording = "(0: every core; unset: every core, or inside a Dask worker the worker's thread count)"
    assert f"{THREADS_ENV}=N sets onnxruntime's threads per process {wording}" in help_text
    assert f"`{THREADS_ENV}=N` sets onnxruntime's threads per process {wording}" in readme


# --------------------------------------------------------------------------- demo


def test_demo_writes_mask_quicklook_and_summary(tmp_path, tiny_args, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", str(SIZE), "--seed", "11", *tiny_args]) == 0
    summary = capsys.readouterr().out
    scene = make_demo_scene(seed=11, size=SIZE)
    with rasterio.open(out / "demo_cloud_mask.tif") as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == scene.transform
        assert src.dtypes == ("uint8",)
        assert src.compression == Compression.lzw
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
        assert src.colormap(1)[4][:3] == (250, 250, 250)
        assert src.nodata == 5
        codes = src.read(1)
    assert set(np.unique(codes)) <= {1, 2, 3, 4, 5}
    assert (codes[scene.labels == 5] == 5).all()
    assert (out / "demo_quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "demo_scene.tif").is_file()
    assert "tiny-test v0.0.1" in summary
    assert "3 semi-transparent cloud" in summary and " %" in summary
    assert "agreement with the generator's ground truth" in summary
    assert "time:" in summary and str(out / "demo_cloud_mask.tif") in summary


def test_demo_refuses_a_file_as_output_folder(tmp_path, tiny_args, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--out", str(target), *tiny_args]) == 2
    one_error_line(capsys, "is a file")


def test_demo_with_a_missing_model_says_where_it_looked(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--model", "no-such-model"]) == 2
    one_error_line(capsys, "'no-such-model' not found", "--model-dir")
    assert not out.exists()  # refused before the scene is made or the folder created


@pytest.mark.parametrize("options, fragment", [
    (["--size", "10"], "--size must be at least 64"),
    (["--scene", "s2cloudless", "--seed", "3"], "synthetic scene only"),
    (["--buffer-m", "-1"], "(on the command line: --buffer-m)"),
])
def test_demo_refuses_bad_options_before_any_work(tmp_path, tiny_args, capsys, options, fragment):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *options, *tiny_args]) == 2
    one_error_line(capsys, fragment)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CARD.is_file(), reason=f"the real model {REAL_CARD.name} is not trained yet")
def test_demo_with_the_real_model(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "cloudmask-s2-4band" in summary
    agreement = float(summary.split("ground truth: ")[1].split(" %")[0])
    assert agreement > 50.0  # a sanity floor for a plumbing test, not a quality metric
    assert (tmp_path / "demo_quicklook.png").is_file()


# --------------------------------------------------------------------------- predict


def test_predict_geotiff_matches_whole_scene(scene, scene_tif, tmp_path, tiny_args, tiny_context, capsys):
    out = tmp_path / "mask.tif"
    assert main(["predict", str(scene_tif), "-o", str(out), *tiny_args]) == 0
    np.testing.assert_array_equal(read_mask(out), whole_scene_mask(scene, tiny_context))
    summary = capsys.readouterr().out
    options = parse_context(tiny_context)  # the default block is the engine's local chunk, cut by the tiling module
    chunk, halo = options.local_chunk(options.describe(), 10.0), options.halo(options.describe(), 10.0)
    assert f"{len(tiling.blocks(SIZE, SIZE, chunk, halo))} block(s), halo {halo} px" in summary
    assert str(out) in summary


def test_predict_streams_small_blocks_like_the_whole_scene(scene, scene_tif, tmp_path, tiny_model_dir,
                                                           tiny_context, capsys):
    out = tmp_path / "mask.tif"
    args = ["predict", str(scene_tif), "-o", str(out), "--block-size", "96",
            "--model", "tiny-test", "--model-dir", str(tiny_model_dir)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"{math.ceil(SIZE / 96) ** 2} block(s)" in captured.out
    assert "block" in captured.err  # the progress bar, on stderr
    streamed, whole = read_mask(out), whole_scene_mask(scene, tiny_context)
    np.testing.assert_array_equal(streamed, whole)


def test_predict_streaming_keeps_the_buffer(scene, scene_tif, tmp_path, tiny_args, tiny_context):
    out = tmp_path / "mask.tif"
    assert main(["predict", str(scene_tif), "-o", str(out), "--block-size", "96", "--buffer-m", "50", *tiny_args]) == 0
    whole = whole_scene_mask(scene, tiny_context, buffer_m=50)
    np.testing.assert_array_equal(read_mask(out), whole)


def test_predict_netcdf_like_the_shared_data(scene, tmp_path, tiny_args, tiny_context):
    from rasterio.crs import CRS

    cube = scene.to_dataarray().expand_dims(t=[np.datetime64("2024-07-01"), np.datetime64("2024-07-06")])
    transform = scene.transform
    spatial_ref = xr.DataArray(0, attrs={
        "crs_wkt": CRS.from_string(scene.crs).to_wkt(),
        "GeoTransform": " ".join(str(v) for v in transform.to_gdal()),
    })
    cube.attrs = {"grid_mapping": "spatial_ref"}
    path = tmp_path / "scene.nc"
    xr.Dataset({"reflectance": cube, "spatial_ref": spatial_ref}).to_netcdf(path)
    out = tmp_path / "mask.tif"
    assert main(["predict", str(path), "-o", str(out), "--time", "1", *tiny_args]) == 0
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == transform
        np.testing.assert_array_equal(src.read(1), whole_scene_mask(scene, tiny_context))


def test_predict_netcdf_with_several_dates_needs_time(scene, tmp_path, tiny_args, capsys):
    cube = scene.to_dataarray().expand_dims(t=2)
    path = tmp_path / "scene.nc"
    cube.to_dataset(name="reflectance").to_netcdf(path)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "2 dates", "--time")


def test_predict_geotiff_without_band_names_needs_bands(scene, tmp_path, tiny_args, tiny_context, capsys):
    path = tmp_path / "unnamed.tif"
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=4, dtype="uint16",
                       crs=scene.crs, transform=scene.transform) as dst:
        dst.write(scene.dn)
    out = tmp_path / "mask.tif"
    assert main(["predict", str(path), "-o", str(out), *tiny_args]) == 2
    one_error_line(capsys, "no descriptions", "--bands")
    assert main(["predict", str(path), "-o", str(out), "--bands", "B02,B03,B04,B08", *tiny_args]) == 0
    np.testing.assert_array_equal(read_mask(out), whole_scene_mask(scene, tiny_context))


def test_predict_marks_input_nodata_as_missing(scene, tmp_path, tiny_args):
    dn = scene.dn.copy()
    dn[:, :40, :40] = 65535
    path = write_stack(tmp_path / "nodata.tif", dn, scene.bands, scene.crs, scene.transform, nodata=65535)
    out = tmp_path / "mask.tif"
    assert main(["predict", str(path), "-o", str(out), *tiny_args]) == 0
    assert (read_mask(out)[:40, :40] == 5).all()


def test_predict_probabilities_are_float_bands(scene_tif, tmp_path, tiny_args):
    out = tmp_path / "probs.tif"
    assert main(["predict", str(scene_tif), "-o", str(out), "--output", "probabilities", *tiny_args]) == 0
    with rasterio.open(out) as src:
        assert src.count == 5 and src.dtypes[0] == "float32"
        assert src.descriptions[0] == "prob_clear"
        total = src.read().sum(axis=0)
    np.testing.assert_allclose(total, 1.0, atol=1e-4)


# --------------------------------------------------------------------------- user errors


def test_missing_input_file(tmp_path, tiny_args, capsys):
    assert main(["predict", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    err = one_error_line(capsys, "does not exist")
    assert "on the command line" not in err  # the file's own errors name the file; no cube hint


def test_not_a_raster(tmp_path, tiny_args, capsys):
    path = tmp_path / "notes.tif"
    path.write_text("not a raster")
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "cannot be read")


def test_missing_bands(scene, tmp_path, tiny_args, capsys):
    path = write_stack(tmp_path / "rgb.tif", scene.dn[:3], scene.bands[:3], scene.crs, scene.transform)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "['B08'] are missing")


def test_wrong_band_names_hint_to_rename_the_labels(scene, tmp_path, tiny_args, capsys):
    path = write_stack(tmp_path / "b8a.tif", scene.dn, ["B02", "B03", "B04", "B8A"], scene.crs, scene.transform)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "['B08'] are missing", "rename the band labels",
                   f"(on the command line: the cube is {path}, its bands labelled by its band descriptions or by "
                   f"--bands in file order)")
    assert [p.name for p in tmp_path.iterdir()] == ["b8a.tif"]


def test_info_with_a_bad_threads_variable_still_lists_the_models(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setenv(THREADS_ENV, "many")
    assert main(["info", "--model-dir", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny-test v0.0.1  ok" in out
    assert f"onnxruntime threads per process: environment variable {THREADS_ENV}='many' must be" in out


def test_a_bad_threads_variable_is_one_line(scene_tif, tmp_path, tiny_args, monkeypatch, capsys):
    monkeypatch.setenv(THREADS_ENV, "many")
    assert main(["predict", str(scene_tif), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, THREADS_ENV, "whole number")
    assert not list(tmp_path.glob("m.tif*"))


def test_reflectance_instead_of_digital_numbers(scene, tmp_path, tiny_args, capsys):
    refl = (scene.dn / 10000.0).astype(np.float32)
    path = write_stack(tmp_path / "refl.tif", refl, scene.bands, scene.crs, scene.transform)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "reflectance 0..1", "multiply")
    assert not list(tmp_path.glob("m.tif*"))  # no half-written mask left behind


def test_bad_context_value(scene_tif, tmp_path, tiny_args, capsys):
    assert main(["predict", str(scene_tif), "-o", str(tmp_path / "m.tif"), "--buffer-m", "-5", *tiny_args]) == 2
    one_error_line(capsys, "buffer_m must be >= 0")


def test_too_small_a_block(scene_tif, tmp_path, tiny_args, capsys):
    assert main(["predict", str(scene_tif), "-o", str(tmp_path / "m.tif"), "--block-size", "16", *tiny_args]) == 2
    one_error_line(capsys, "--block-size", "at least 64")


def test_contradicting_processing_level(scene, tmp_path, tiny_args, capsys):
    dn = np.concatenate([scene.dn, scene.dn[:1]])
    path = write_stack(tmp_path / "l1c.tif", dn, [*scene.bands, "B10"], scene.crs, scene.transform)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.tif"), *tiny_args]) == 2
    one_error_line(capsys, "L1C-only band", "--processing-level")


def test_corrupt_model(tiny_model_dir, scene_tif, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tiny-test.json").write_text((tiny_model_dir / "tiny-test.json").read_text())
    (broken / "tiny-test.onnx").write_bytes(b"garbage")
    args = ["predict", str(scene_tif), "-o", str(tmp_path / "m.tif"), "--model", "tiny-test", "--model-dir", str(broken)]
    assert main(args) == 2
    one_error_line(capsys, "sha256", "corrupt")


def test_output_would_overwrite_input(scene_tif, tiny_args, capsys):
    assert main(["predict", str(scene_tif), "-o", str(scene_tif), *tiny_args]) == 2
    one_error_line(capsys, "overwrite the input")


def test_a_folder_as_output_is_refused_before_any_work(scene_tif, tmp_path, tiny_args, capsys):
    before = sorted(tmp_path.rglob("*"))
    assert main(["predict", str(scene_tif), "-o", str(tmp_path), *tiny_args]) == 2
    one_error_line(capsys, "is a folder", "give the mask a file name", str(tmp_path / "mask.tif"))
    assert sorted(tmp_path.rglob("*")) == before
    # refused before the input is even opened: a missing input is not what the error is about
    assert main(["predict", str(tmp_path / "nope.tif"), "-o", str(tmp_path), *tiny_args]) == 2
    one_error_line(capsys, "is a folder")


@pytest.mark.parametrize("name, fragments", [
    ("mask.png", ["'.png' names no format", ".tif or .nc"]),
    ("mask", ["'(none)' names no format"]),
    ("no/such/folder/mask.tif", ["does not exist", "choose another -o path"]),
])
def test_bad_output_paths_are_refused_before_any_work(tmp_path, tiny_args, capsys, name, fragments):
    # the input does not exist either: the output is checked first, before anything is read
    assert main(["predict", str(tmp_path / "nope.tif"), "-o", str(tmp_path / name), *tiny_args]) == 2
    one_error_line(capsys, *fragments)
    assert not list(tmp_path.iterdir())


def test_predict_netcdf_output(scene, scene_tif, tmp_path, tiny_args, tiny_context, capsys):
    out = tmp_path / "mask.nc"
    assert main(["predict", str(scene_tif), "-o", str(out), *tiny_args]) == 0
    assert f"written: {out} (NetCDF)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.nc", "scene.tif"]
    with xr.open_dataset(out, decode_coords="all") as ds:
        assert ds["cloud_mask"].dims == ("y", "x") and ds["cloud_mask"].dtype == np.uint8
        np.testing.assert_array_equal(ds["cloud_mask"].values, whole_scene_mask(scene, tiny_context))
        cube = scene.to_dataarray()
        np.testing.assert_allclose(ds["x"].values, cube["x"].values)
        np.testing.assert_allclose(ds["y"].values, cube["y"].values)
        assert ds["cloud_mask"].attrs["flag_meanings"].split()[:2] == ["clear", "cloud_shadow"]
        assert rasterio.crs.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"]).to_epsg() == 32633
        assert ds.attrs["model"] == "tiny-test"


def test_predict_netcdf_probabilities(scene, scene_tif, tmp_path, tiny_args, tiny_context):
    out = tmp_path / "probs.nc"
    assert main(["predict", str(scene_tif), "-o", str(out), "--output", "probabilities", *tiny_args]) == 0
    whole = mask_cube(scene.to_dataarray(), {**tiny_context, "output": "probabilities"})
    with xr.open_dataset(out) as ds:
        for name in whole.coords["bands"].values:
            assert ds[name].dtype == np.float32
            np.testing.assert_array_equal(ds[name].values, whole.sel(bands=name).values)


def test_a_failed_netcdf_run_leaves_nothing_behind(scene, tmp_path, tiny_args, capsys):
    refl = (scene.dn / 10000.0).astype(np.float32)
    path = write_stack(tmp_path / "refl.tif", refl, scene.bands, scene.crs, scene.transform)
    assert main(["predict", str(path), "-o", str(tmp_path / "m.nc"), *tiny_args]) == 2
    one_error_line(capsys, "reflectance 0..1")
    assert [p.name for p in tmp_path.iterdir()] == ["refl.tif"]


@pytest.mark.slow
@pytest.mark.parametrize("suffix, signum, exit_code, said", [
    (".tif", signal.SIGTERM, 143, "terminated"),
    (".nc", signal.SIGTERM, 143, "terminated"),
    (".tif", signal.SIGINT, 130, "interrupted"),
])
def test_a_stopped_run_leaves_no_part_file(tmp_path, suffix, signum, exit_code, said):
    """A real ``python -m openeo_cloudmask`` process, sent SIGTERM (or Ctrl-C's SIGINT) while it writes its ``.part`` file."""
    rng = np.random.default_rng(0)
    # 128 blocks: several seconds even on a fast host (CI once finished 16 blocks, 0.6 s, before the signal came)
    dn = rng.integers(300, 9000, (4, 2048, 4096), dtype=np.uint16)
    scene = write_stack(tmp_path / "scene.tif", dn, ["B02", "B03", "B04", "B08"], "EPSG:32633",
                        rasterio.transform.from_origin(500000, 5000000, 10, 10))
    out = tmp_path / f"mask{suffix}"
    # the real model in 256 px blocks, each read with its 256 px halo
    process = subprocess.Popen(
        [sys.executable, "-m", "openeo_cloudmask", "predict", str(scene), "-o", str(out), "--block-size", "256"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        # a shell starts background jobs (make test &, CI) with SIGINT ignored, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*.part")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, f"finished before it could be stopped: {process.communicate()}"
    assert list(tmp_path.glob("*.part"))
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, (stdout, stderr)
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line]  # the bar redraws with \r
    assert lines[-1] == f"openeo-cloudmask: {said}", stderr  # on its own line, after the closed progress bar
    assert all(line.startswith("masking:") for line in lines[:-1]), stderr
    assert [p.name for p in tmp_path.iterdir()] == ["scene.tif"]


# --------------------------------------------------------------------------- the s2cloudless scene, offline


def fake_sdist(path: Path, height=96, width=80) -> Path:
    """A tarball laid out like the s2cloudless 1.2.1 sdist, holding a small made-up input_arrays.npz."""
    rng = np.random.default_rng(0)
    image = rng.uniform(0.02, 0.3, (1, height, width, 13)).astype(np.float32)
    image[0, :30, :30, :] = 0.6  # a bright "cloud"
    buffer = io.BytesIO()
    np.savez(buffer, s2_im=image, cl_probs=np.zeros((1, height, width)), cl_mask=np.zeros((1, height, width), np.int8))
    data = buffer.getvalue()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("s2cloudless-1.2.1/s2cloudless/TestInputs/input_arrays.npz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        readme = b"not the npz"
        info = tarfile.TarInfo("s2cloudless-1.2.1/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return path


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENEO_CLOUDMASK_CACHE", str(tmp_path / "mine"))
    assert s2cloudless_scene.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("OPENEO_CLOUDMASK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert s2cloudless_scene.cache_dir() == tmp_path / "xdg" / "openeo-cloudmask"


def test_extract_npz_from_the_sdist(tmp_path):
    npz = s2cloudless_scene.extract_npz(fake_sdist(tmp_path / "s2cloudless-1.2.1.tar.gz"), tmp_path / "c" / "x.npz")
    scene = s2cloudless_scene.load_npz(npz)
    assert scene.dn.shape == (13, 96, 80) and scene.dn.dtype == np.uint16
    assert scene.dn[0, 0, 0] == 6000  # reflectance 0.6 -> DN
    assert scene.processing_level == "L1C" and scene.bands[10] == "B10"
    assert not list((tmp_path / "c").glob("*.part"))


def test_extract_npz_from_the_wrong_tarball(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(s2cloudless_scene.SceneDownloadError, match="holds no"):
        s2cloudless_scene.extract_npz(path, tmp_path / "x.npz")


def test_demo_s2cloudless_scene_from_the_cache(tmp_path, monkeypatch, tiny_args, capsys):
    sdist = fake_sdist(tmp_path / "s2cloudless-1.2.1.tar.gz")
    monkeypatch.setenv("OPENEO_CLOUDMASK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(s2cloudless_scene, "download_sdist", lambda directory: sdist)  # instead of pip
    out = tmp_path / "demo"
    assert main(["demo", "--scene", "s2cloudless", "--out", str(out), *tiny_args]) == 0
    summary = capsys.readouterr().out
    assert "L1C" in summary and "CC BY-SA 4.0" in summary
    assert (tmp_path / "cache" / s2cloudless_scene.CACHE_NAME).is_file()
    codes = read_mask(out / "s2cloudless_cloud_mask.tif")
    assert codes.shape == (96, 80)
    assert (codes[:20, :20] == 4).all()  # the bright block is cloud for the brightness model

    def no_download(directory):
        raise AssertionError("the cached scene must not be downloaded again")

    monkeypatch.setattr(s2cloudless_scene, "download_sdist", no_download)
    assert main(["demo", "--scene", "s2cloudless", "--out", str(out), *tiny_args]) == 0


def test_failed_download_is_one_line(tmp_path, monkeypatch, tiny_args, capsys):
    monkeypatch.setenv("OPENEO_CLOUDMASK_CACHE", str(tmp_path / "cache"))

    def offline(directory):
        raise s2cloudless_scene.SceneDownloadError("downloading s2cloudless==1.2.1 from PyPI failed (offline)")

    monkeypatch.setattr(s2cloudless_scene, "download_sdist", offline)
    assert main(["demo", "--scene", "s2cloudless", "--out", str(tmp_path / "d"), *tiny_args]) == 2
    notice, error = capsys.readouterr().err.strip().split("\n")  # what it tried, then what failed
    assert notice.startswith("downloading s2cloudless==1.2.1 from PyPI (once")
    assert error == "openeo-cloudmask: error: downloading s2cloudless==1.2.1 from PyPI failed (offline)"
