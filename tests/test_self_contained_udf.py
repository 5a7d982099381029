"""The UDF inside the committed UDP, run as a backend's bare runtime would: ``python -I -S``, only numpy, xarray
and onnxruntime importable, no model files, no openeo and no openeo_cloudmask.

The UDF code is taken from ``process_graphs/cloud_mask.json`` (its ``run_udf`` node), written to a file and
executed as a module; its ``apply_datacube`` runs on a cube saved by this process, and the answer must equal the
installed engine's bit for bit. Without onnxruntime, the error is one line naming the job option; with
onnxruntime only in ``./onnx_deps`` (the public archive's folder) it loads from there.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from openeo_cloudmask.release import settings, udp_build
from openeo_cloudmask.udf import cloud_mask as engine

#: What a bare UDF runtime offers: numpy, xarray (with pandas and its own needs) and onnxruntime.
RUNTIME = ("numpy", "xarray", "pandas", "dateutil", "six", "pytz", "tzdata", "packaging", "onnxruntime")

_RUN = r"""
import json, sys, types
import numpy as np, xarray as xr
for forbidden in ("openeo", "openeo_cloudmask"):
    try:
        __import__(forbidden)
        raise SystemExit(f"{forbidden} must not be importable here")
    except ImportError:
        pass
args = json.loads(sys.argv[1])
module = types.ModuleType("udf")
exec(compile(open(args["udf"]).read(), "udf", "exec"), module.__dict__)
saved = np.load(args["cube"])  # no netCDF library in a bare runtime: values and coordinates as arrays
cube = xr.DataArray(saved["values"], dims=("t", "bands", "y", "x"),
                    coords={name: saved[name] for name in ("t", "bands", "y", "x")})
result = module.apply_datacube(cube, {})
np.save(args["out"], result.values)
model = module.load_model()
import onnxruntime
print(json.dumps({"onnx_path": str(model.onnx_path), "onnxruntime": onnxruntime.__file__, "dims": list(result.dims),
                  "threads": module.os.environ.get(module.THREADS_ENV)}))
"""


def shadow_site(root: Path, packages) -> Path:
    """A site-packages holding only ``packages`` (and their dist-info) from this environment's."""
    site = Path(sysconfig.get_paths()["purelib"])
    shadow = root / "site"
    shadow.mkdir()
    for entry in site.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name in packages or name == "python_dateutil" and "dateutil" in packages:
            (shadow / entry.name).symlink_to(entry)
    return shadow


def run_bare(workdir: Path, site: Path, udf: Path, cube: Path) -> subprocess.CompletedProcess:
    stdlib = [p for p in sys.path if p and Path(p).resolve().is_relative_to(Path(sys.base_prefix).resolve())
              and "site-packages" not in p]
    boot = f"import sys; sys.path[:] = {stdlib!r} + [{str(site)!r}]; exec(compile(sys.argv.pop(1), 'run', 'exec'))"
    args = json.dumps({"udf": str(udf), "cube": str(cube), "out": str(workdir / "out.npy")})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OPENEO_CLOUDMASK"))}
    return subprocess.run([sys.executable, "-I", "-S", "-c", boot, _RUN, args], cwd=workdir, capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The committed UDP's UDF code and a coordinate-bearing cube, on disk."""
    folder = tmp_path_factory.mktemp("bare")
    udf = folder / "udf.py"
    udf.write_text(udp_build.udf_code(json.loads(settings.UDP_PATH.read_text())))
    rng = np.random.default_rng(11)
    n = 200
    cube = xr.DataArray(rng.integers(100, 7000, size=(2, 4, n, n)).astype(np.uint16), dims=("t", "bands", "y", "x"),
                        coords={"t": np.array(["2024-05-01", "2024-05-11"], dtype="datetime64[ns]"),
                                "bands": ["B02", "B03", "B04", "B08"],
                                "y": 5_000_000.0 - 10 * np.arange(n), "x": 600_000.0 + 10 * np.arange(n)},
                        name="dn")
    path = folder / "cube.npz"
    np.savez(path, values=cube.values, **{name: cube[name].values for name in ("t", "bands", "y", "x")})
    return udf, path, cube


@pytest.mark.slow
def test_udf_runs_bare_and_loads_the_model_from_its_own_code(inputs, tmp_path):
    udf, cube_path, cube = inputs
    done = run_bare(tmp_path, shadow_site(tmp_path, RUNTIME), udf, cube_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["onnx_path"].startswith("<embedded>")
    assert report["threads"] == str(udp_build.TASK_CPUS)
    expected = engine.mask_cube(cube, {})
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected.values)


@pytest.mark.slow
def test_without_onnxruntime_the_error_is_one_line_naming_the_job_option(inputs, tmp_path):
    udf, cube_path, _ = inputs
    done = run_bare(tmp_path, shadow_site(tmp_path, set(RUNTIME) - {"onnxruntime"}), udf, cube_path)
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if "ModelFileError" in line]
    assert "onnxruntime cannot be imported" in line and "'udf-dependency-archives'" in line
    assert engine.ONNX_DEPS_ARCHIVE in line


@pytest.mark.slow
def test_onnxruntime_from_the_onnx_deps_folder(inputs, tmp_path):
    """What '<onnx_deps_python311.zip>#onnx_deps' unpacks: onnxruntime in ./onnx_deps, found by the UDF itself."""
    udf, cube_path, cube = inputs
    import onnxruntime

    deps = tmp_path / engine.ONNX_DEPS_FOLDER
    deps.mkdir()
    (deps / "onnxruntime").symlink_to(Path(onnxruntime.__file__).parent)
    done = run_bare(tmp_path, shadow_site(tmp_path, set(RUNTIME) - {"onnxruntime"}), udf, cube_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["onnxruntime"]).parent.parent == deps
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), engine.mask_cube(cube, {}).values)
