"""The dependency archive, unpacked as a backend unpacks it and used by the UDF in a FRESH interpreter.

The fresh interpreter (``python -I -S``) sees the standard library, a copy of
this environment's site-packages *without* onnxruntime and without
openeo_cloudmask (so numpy, xarray and openeo, which a backend's UDF runtime
has), and the unpacked archive in its working directory. The UDF code is the
``udf`` string of the generated UDP, run through ``openeo.udf.run_udf_code``.

The archive here carries the onnxruntime installed in this environment, not a
wheel downloaded for CDSE: no test touches the network. This machine's Python
is CPython 3.11 on x86_64 Linux, the same runtime the CDSE archive targets
(cp311, manylinux_2_28_x86_64), so the files are the same kind; the
PyPI-download path itself is exercised by ``make archive``.
"""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from openeo_cloudmask.release import settings
from openeo_cloudmask.release.archive import MANIFEST_NAME, ArchiveBuildError, build_archive, main
from openeo_cloudmask.release.udp_build import load_card, udf_code
from openeo_cloudmask.udf import cloud_mask as engine
from tiny_model import TINY_MODEL_ID
from udp_builders import build_test_udp

HIDDEN = ("onnxruntime", "openeo_cloudmask", "openeo-cloudmask", "__editable__", "coloredlogs", "flatbuffers",
          "sympy", "mpmath", "humanfriendly")

_RUN = r"""
import json, sys
import numpy as np, xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code
try:
    import openeo_cloudmask
    raise SystemExit("openeo_cloudmask must not be importable here")
except ImportError:
    pass
args = json.loads(sys.argv[1])
dn = np.repeat(np.array([200.0, 1000.0, 3000.0, 6000.0], dtype=np.float32), 16)[None, None, :, None]
cube = xr.DataArray(dn * np.ones((3, 4, 64, 40), dtype=np.float32), dims=("t", "bands", "y", "x"),
                    coords={"bands": ["B02", "B03", "B04", "B08"]})
out = run_udf_code(open(args["udf"]).read(), UdfData(datacube_list=[XarrayDataCube(cube)], user_context=args["context"]))
result = out.get_datacube_list()[0].get_array()
import onnxruntime
print(json.dumps({"dims": list(result.dims), "codes": sorted(int(c) for c in np.unique(result.values[:, 0, 4:12])),
                  "column": result.values[0, 0, :, 20].tolist(), "onnxruntime": onnxruntime.__file__,
                  "sys_path": sys.path}))
"""


@pytest.fixture(scope="module")
def shadow_site(tmp_path_factory):
    """This environment's site-packages, minus onnxruntime (and its tool-only deps) and this project."""
    site = Path(sysconfig.get_paths()["purelib"])
    shadow = tmp_path_factory.mktemp("site")
    for entry in site.iterdir():
        if entry.name.startswith(HIDDEN) or entry.suffix in (".pth", ".egg-link"):
            continue
        (shadow / entry.name).symlink_to(entry)
    return shadow


@pytest.fixture(scope="module")
def udf_file(tmp_path_factory, tiny_model_dir):
    """The UDF exactly as the UDP hands it to the backend (the run_udf ``udf`` string)."""
    card = load_card(TINY_MODEL_ID, tiny_model_dir)
    code = udf_code(build_test_udp(card, archive_option=f"https://example.invalid/deps.zip#{engine.ARCHIVE_FOLDER}"))
    path = tmp_path_factory.mktemp("udf") / "udf.py"
    path.write_text(code)
    return path


def installed_onnxruntime() -> Path:
    import onnxruntime

    return Path(onnxruntime.__file__).parent


def unpack(archive: Path, workdir: Path) -> Path:
    """What geopyspark does with ``<url>#cloudmask_deps``: unzip into ``./cloudmask_deps``."""
    target = workdir / engine.ARCHIVE_FOLDER
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    return target


def run_fresh(workdir: Path, shadow: Path, udf: Path, context: dict) -> subprocess.CompletedProcess:
    stdlib = [p for p in sys.path if p and Path(p).resolve().is_relative_to(Path(sys.base_prefix).resolve())
              and "site-packages" not in p]
    boot = f"import sys; sys.path[:] = {stdlib!r} + [{str(shadow)!r}]; exec(compile(sys.argv.pop(1), 'run', 'exec'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OPENEO_CLOUDMASK"))}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", boot, _RUN, json.dumps({"udf": str(udf), "context": context})],
        cwd=workdir, capture_output=True, text=True, env=env, timeout=180,
    )


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("dist")
    return build_archive(out, [TINY_MODEL_ID], tiny_model_dir, onnxruntime_source=installed_onnxruntime(), compress=False)


def test_layout_matches_what_the_udf_looks_for(full_archive, tiny_model_dir):
    names = zipfile.ZipFile(full_archive).namelist()
    assert f"models/{TINY_MODEL_ID}.json" in names and f"models/{TINY_MODEL_ID}.onnx" in names
    assert "onnxruntime/__init__.py" in names
    assert not any(name.startswith(engine.ARCHIVE_FOLDER + "/") for name in names), "the folder comes from '#cloudmask_deps'"
    manifest = json.loads(zipfile.ZipFile(full_archive).read(MANIFEST_NAME))
    card = json.loads((tiny_model_dir / f"{TINY_MODEL_ID}.json").read_text())
    assert manifest["models"] == {TINY_MODEL_ID: card["onnx_sha256"]}
    assert manifest["job_option"] is None  # no release URL set: nothing to name
    assert full_archive.name == settings.archive_name(card)


def test_archive_is_reproducible(tmp_path, tiny_model_dir):
    a = build_archive(tmp_path / "a.zip", [TINY_MODEL_ID], tiny_model_dir, include_onnxruntime=False)
    b = build_archive(tmp_path / "b.zip", [TINY_MODEL_ID], tiny_model_dir, include_onnxruntime=False)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_udf_runs_from_the_unpacked_archive_in_a_fresh_interpreter(full_archive, shadow_site, udf_file, tmp_path):
    deps = unpack(full_archive, tmp_path)
    done = run_fresh(tmp_path, shadow_site, udf_file, {"model": TINY_MODEL_ID})  # no model_dir: found in ./cloudmask_deps
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dims"] == ["t", "bands", "y", "x"]
    assert report["codes"] == [2]  # rows 4..11 are the 200-DN band: shadow for the tiny model
    assert report["column"][4:12] == [2] * 8 and report["column"][52:60] == [4] * 8
    assert Path(report["onnxruntime"]).resolve().is_relative_to(deps.resolve()), report["onnxruntime"]
    assert not any("site-packages" in p for p in report["sys_path"])


@pytest.mark.slow
def test_models_only_archive_without_onnxruntime_names_the_job_option(tmp_path, tiny_model_dir, shadow_site, udf_file):
    archive = build_archive(tmp_path / "dist", [TINY_MODEL_ID], tiny_model_dir, include_onnxruntime=False)
    assert archive.name.endswith("-models-only.zip")
    unpack(archive, tmp_path)
    done = run_fresh(tmp_path, shadow_site, udf_file, {"model": TINY_MODEL_ID})
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if "ModelFileError" in line]
    assert "onnxruntime cannot be imported" in line and "'udf-dependency-archives'" in line


@pytest.mark.slow
def test_archive_without_the_model_names_the_job_option(full_archive, tmp_path, shadow_site, udf_file):
    deps = unpack(full_archive, tmp_path)
    for path in (deps / "models").iterdir():
        path.unlink()
    done = run_fresh(tmp_path, shadow_site, udf_file, {"model": TINY_MODEL_ID})
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if "ModelFileError" in line]
    assert f"model '{TINY_MODEL_ID}' not found" in line and "'udf-dependency-archives'" in line


def test_missing_card_or_mismatched_onnx_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ArchiveBuildError, match="not found"):
        build_archive(tmp_path, ["no-such-model"], tiny_model_dir, include_onnxruntime=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_model_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / f"{TINY_MODEL_ID}.onnx").write_bytes(b"not a model")
    with pytest.raises(ArchiveBuildError, match="sha256"):
        build_archive(tmp_path, [TINY_MODEL_ID], broken, include_onnxruntime=False)


def test_command_line_builds_a_models_only_archive(tmp_path, tiny_model_dir, capsys):
    code = main(["--model", TINY_MODEL_ID, "--models-dir", str(tiny_model_dir), "--no-onnxruntime",
                 "--output", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "udf-dependency-archives" in out and f"#{engine.ARCHIVE_FOLDER}" in out
    assert len(list(tmp_path.glob("*.zip"))) == 1
