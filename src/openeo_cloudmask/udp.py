"""The ``cloud_mask`` user-defined process (UDP) for openEO backends such as CDSE.

``process_graphs/cloud_mask.json`` is *generated* by :func:`build_udp` from three
sources and never edited by hand:

1. the UDF file ``udf/cloud_mask.py``, embedded verbatim as ``run_udf``'s ``udf``;
2. the model card ``models/<model>.json``: its ``tiling.recommended_chunk`` and
   ``recommended_overlap`` become ``apply_neighborhood``'s ``size`` and ``overlap``;
3. the measured memory of one UDF call on one chunk
   (``process_graphs/cloud_mask.memory.json``, written by ``--measure``), which sizes
   ``default_job_options["python-memory"]``.

Regenerate with ``make udp`` (``python process_graphs/build_udp.py``); after a new
model or a changed window, ``make udp MEASURE=1`` measures the memory again.
``tests/test_udp.py`` fails when the committed file drifts from its sources.

Hosting. Where the dependency archive (model + onnxruntime, see
:mod:`openeo_cloudmask.dependency_archive`) and the UDP JSON are published is
ONE build setting: :data:`RELEASE_URL`, a URL pattern with ``{version}``. It is
a placeholder (``OWNER``) until the project publishes a release: upload
``dist/<archive_name(...)>`` and ``process_graphs/cloud_mask.json`` as release
assets at that address, or point :data:`RELEASE_URL` at any HTTPS host the
backend can read (an S3 bucket, an artifactory) and regenerate. The environment
variable ``OPENEO_CLOUDMASK_RELEASE_URL`` overrides it for one-off builds
(staging); the drift test always uses the constant.

CDSE facts this module relies on (sources in docs/CDSE.md):

- ``apply_neighborhood`` with a UDF needs ``size`` in ``px`` and at least 32 px
  in x and y; ``t`` must be ``null`` (the whole time series per chunk) or
  ``P1D`` without overlap; the overlap is cut off again after the UDF.
- the default ``executor-memoryOverhead`` is 1800m; when ``python-memory`` is not
  set, Python gets that minus 128m (1672 MiB). Setting ``python-memory`` alone
  shrinks the overhead to 128m and gives Python exactly that amount.
- the UDF runtime is Python 3.11 (default since 2025-10-28) on an AlmaLinux 8
  image (glibc 2.28), so the archive carries a cp311 manylinux_2_28_x86_64
  onnxruntime.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from openeo_cloudmask._version import __version__

UDP_ID = "cloud_mask"
DEFAULT_MODEL = "cloudmask-s2-4band"
#: Folder that ``udf-dependency-archives`` entries unpack into; must equal the UDF's ``ARCHIVE_FOLDER``.
ARCHIVE_FOLDER = "cloudmask_deps"

#: THE hosting setting (see the module docstring). ``OWNER`` is a placeholder until a release exists.
RELEASE_URL = "https://github.com/OWNER/openeo-cloudmask/releases/download/v{version}"
RELEASE_URL_ENV = "OPENEO_CLOUDMASK_RELEASE_URL"

#: The UDF runtime the archive's onnxruntime is built for (CDSE default since 2025-10-28).
CDSE_PYTHON = "3.11"
CDSE_PLATFORM = "manylinux_2_28_x86_64"
#: geopyspark rejects UDF windows smaller than this (ProcessParameterInvalid on ``size``).
CDSE_MIN_UDF_SIZE = 32
#: CDSE default ``executor-memoryOverhead`` (1800m) minus the 128m kept for the JVM.
CDSE_DEFAULT_PYTHON_MEMORY_MIB = 1800 - 128
#: Dates per chunk the memory is measured for.
MEASURE_DATES = 12
#: Dates per chunk ``python-memory`` is sized for: one year at Sentinel-2's 5-day revisit. With ``t`` null every
#: chunk carries its whole time series, and the UDF's memory grows linearly with it (``per_date_mib``).
DESIGN_DATES = 73
#: ``python-memory`` = the peak predicted for DESIGN_DATES x this margin, rounded up to 256 MiB.
MEMORY_MARGIN = 1.25

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
UDP_PATH = REPO / "process_graphs" / f"{UDP_ID}.json"
MEMORY_PATH = REPO / "process_graphs" / f"{UDP_ID}.memory.json"


class UdpBuildError(RuntimeError):
    """A source of the UDP is missing or inconsistent; the message says which command fixes it."""


# --------------------------------------------------------------------------- settings


def release_url(version: str = __version__, *, use_env: bool = True) -> str:
    base = (os.environ.get(RELEASE_URL_ENV) if use_env else None) or RELEASE_URL
    return base.format(version=version).rstrip("/")


def archive_name(model: str = DEFAULT_MODEL, python: str = CDSE_PYTHON, platform: str = CDSE_PLATFORM) -> str:
    """File name of the dependency archive for one model id and one UDF runtime.

    The model's version is not in the name: a release (``RELEASE_URL``'s
    ``{version}``) ships one version of each model, recorded in the archive's
    manifest and checked by the UDF against the card's sha256.
    """
    model = model["id"] if isinstance(model, dict) else model
    tag = "cp" + python.replace(".", "")
    return f"{ARCHIVE_FOLDER}-{model}-{tag}-{platform}.zip"


def archive_url(model: str = DEFAULT_MODEL, *, use_env: bool = True) -> str:
    """Where the dependency archive for ``model`` (an id or a card) is published."""
    return f"{release_url(use_env=use_env)}/{archive_name(model)}"


def dependency_archive_option(model: str = DEFAULT_MODEL, *, use_env: bool = True) -> str:
    """The ``udf-dependency-archives`` entry: ``<url>#cloudmask_deps``."""
    return f"{archive_url(model, use_env=use_env)}#{ARCHIVE_FOLDER}"


def udp_namespace_url(*, use_env: bool = True) -> str:
    """What users pass as ``namespace`` to call the published UDP."""
    return f"{release_url(use_env=use_env)}/{UDP_ID}.json"


# --------------------------------------------------------------------------- sources


def load_card(model: str = DEFAULT_MODEL, models_dir: Path = MODELS_DIR) -> dict:
    path = Path(models_dir) / f"{model}.json"
    if not path.is_file():
        raise UdpBuildError(
            f"model card {path} not found: the UDP takes its window and overlap from the card of model {model!r}. "
            f"Train or copy the model into {models_dir} (or pass --model/--models-dir), then run `make udp`"
        )
    return json.loads(path.read_text())


def udf_source() -> str:
    """The UDF file exactly as a backend will run it."""
    return Path(udf_path()).read_text()


def neighborhood_window(card: dict) -> tuple:
    """``(size, overlap)`` in pixels for ``apply_neighborhood``, from the card, within CDSE's limits.

    ``size`` is the card's ``recommended_chunk`` (at least the model's
    ``min_tile_size`` and CDSE's 32 px, a multiple of ``size_multiple``), so each
    chunk the UDF sees is ``size + 2 * overlap`` pixels wide, which the card
    guarantees fits in one engine window: no inner seams, little memory.
    """
    tiling = card["tiling"]
    multiple = int(tiling.get("size_multiple", 1))
    chunk = int(tiling.get("recommended_chunk", tiling["recommended_window"]))
    size = max(chunk, int(tiling.get("min_tile_size", 0)), CDSE_MIN_UDF_SIZE)
    size = int(math.ceil(size / multiple) * multiple)
    overlap = int(tiling["recommended_overlap"])
    return size, overlap


def load_memory_record(card: dict, path: Path = MEMORY_PATH) -> dict:
    """The committed memory measurement, checked against the card it must describe."""
    size, overlap = neighborhood_window(card)
    command = "make udp MEASURE=1  (python process_graphs/build_udp.py --measure)"
    if not Path(path).is_file():
        raise UdpBuildError(f"no memory measurement at {path}; run `{command}`")
    record = json.loads(Path(path).read_text())
    expected = {"model": card["id"], "onnx_sha256": card["onnx_sha256"], "chunk_px": size + 2 * overlap,
                "dates": MEASURE_DATES}
    found = {key: record.get(key) for key in expected}
    if found != expected:
        raise UdpBuildError(
            f"{path} was measured for {found}, but the UDP now needs {expected}; run `{command}`"
        )
    return record


def predicted_peak_mib(memory: dict, dates: int = DESIGN_DATES) -> float:
    """The UDF's peak for a chunk of ``dates`` dates, from the measured one-date peak and cost per date."""
    return max(memory["peak_rss_mib_one_date"] + memory["per_date_mib"] * (dates - 1), memory["peak_rss_mib"])


def python_memory_mib(memory: dict) -> int:
    """``python-memory`` in MiB: the predicted peak for DESIGN_DATES dates x MEMORY_MARGIN, rounded up to 256."""
    return int(math.ceil(predicted_peak_mib(memory) * MEMORY_MARGIN / 256.0) * 256)


# --------------------------------------------------------------------------- the UDP


_CLASSES_TEXT = (
    "KappaMask class codes in band `cloud_mask`: 1 clear, 2 cloud shadow, 3 semi-transparent cloud, "
    "4 cloud, 5 missing (no data in any input band)."
)


def _parameters(card: dict) -> list:
    bands = ", ".join(card["input"]["bands"])
    return [
        {
            "name": "data",
            "description": (
                f"Sentinel-2 cube with at least the bands {bands} as digital numbers (reflectance x 10000), "
                "as `load_collection('SENTINEL2_L2A' or 'SENTINEL2_L1C')` delivers them. Dimensions x, y, bands "
                "and optionally t; every date is masked on its own."
            ),
            "schema": {"type": "object", "subtype": "datacube"},
        },
        {
            "name": "processing_level",
            "description": "Processing level of `data`: `L2A` (surface reflectance) or `L1C` (top of atmosphere).",
            "schema": {"type": "string", "enum": ["L2A", "L1C"]},
            "default": "L2A",
            "optional": True,
        },
        {
            "name": "radiometric_offset",
            "description": (
                "Offset baked into the digital numbers, subtracted before masking. 0 is right for CDSE's "
                "collections, which already remove the +1000 `BOA_ADD_OFFSET` of processing baseline 04.00; use "
                "1000 only for raw baseline >= 04.00 products."
            ),
            "schema": {"type": "number", "minimum": 0},
            "default": 0,
            "optional": True,
        },
        {
            "name": "output",
            "description": (
                "`classes`: one band `cloud_mask` with the class codes. `probabilities`: one band per class, "
                "`prob_<class>`, 0..1. `cloud_detection`: bands `cloud` and `shadow`, 0..1, as the openEO "
                "`cloud_detection` proposal."
            ),
            "schema": {"type": "string", "enum": ["classes", "probabilities", "cloud_detection"]},
            "default": "classes",
            "optional": True,
        },
        {
            "name": "buffer",
            "description": (
                "Grow cloud, semi-transparent cloud and shadow over clear pixels by this many metres (0: no "
                f"buffer). Keep it below the overlap ({neighborhood_window(card)[1]} px) times the pixel size, or "
                "chunk borders show."
            ),
            "schema": {"type": "number", "minimum": 0},
            "default": 0,
            "optional": True,
        },
        {
            "name": "model",
            "description": (
                "Model id: a card `<model>.json` beside `<model>.onnx` in the dependency archive listed in the job "
                "option `udf-dependency-archives`."
            ),
            "schema": {"type": "string"},
            "default": card["id"],
            "optional": True,
        },
    ]


def neighborhood_node(udf: str, size: int, overlap: int, model_dir=None) -> dict:
    """``apply_neighborhood(run_udf)`` over the ``cloud_mask`` parameters: the body of the UDP and of the
    openeo-driver plugin's process. ``model_dir`` pins the model folder (local backends and tests)."""
    context = {
        "processing_level": {"from_parameter": "processing_level"},
        "radiometric_offset": {"from_parameter": "radiometric_offset"},
        "output": {"from_parameter": "output"},
        "buffer_m": {"from_parameter": "buffer"},
        "model": {"from_parameter": "model"},
    }
    if model_dir is not None:
        context["model_dir"] = str(model_dir)
    run_udf = {
        "process_id": "run_udf",
        "arguments": {
            "data": {"from_parameter": "data"},
            "udf": udf,
            "runtime": "Python",
            "context": {"from_parameter": "context"},
        },
        "result": True,
    }
    return {
        "process_id": "apply_neighborhood",
        "arguments": {
            "data": {"from_parameter": "data"},
            "process": {"process_graph": {"runudf1": run_udf}},
            "size": [
                {"dimension": "x", "value": size, "unit": "px"},
                {"dimension": "y", "value": size, "unit": "px"},
                {"dimension": "t", "value": None},
            ],
            "overlap": [
                {"dimension": "x", "value": overlap, "unit": "px"},
                {"dimension": "y", "value": overlap, "unit": "px"},
            ],
            "context": context,
        },
        "result": True,
    }


def build_udp(card: dict, udf: str, memory: dict, archive: str) -> dict:
    """The UDP as a dict: a pure function of its sources (tests regenerate it in memory)."""
    size, overlap = neighborhood_window(card)
    neighborhood = neighborhood_node(udf, size, overlap)
    python_memory = python_memory_mib(memory)
    chunk = size + 2 * overlap
    description = "\n\n".join([
        f"AI cloud and cloud-shadow mask for Sentinel-2 (model `{card['id']}` v{card['version']}), run as a Python "
        f"UDF in `apply_neighborhood` chunks of {size} px plus {overlap} px overlap on each side, all dates of a "
        f"chunk at once.",
        _CLASSES_TEXT,
        f"The model and onnxruntime come from the dependency archive in the default job option "
        f"`udf-dependency-archives` ({archive}#{ARCHIVE_FOLDER}).",
        f"Measured Python memory for one {chunk} x {chunk} px chunk: {memory['peak_rss_mib']:.0f} MiB peak with "
        f"{memory['dates']} dates, plus {memory['per_date_mib']:.1f} MiB per further date. The default "
        f"`python-memory` {python_memory}m covers about {DESIGN_DATES} dates per chunk (one year); add "
        f"{math.ceil(memory['per_date_mib'])}m per extra date.",
        f"Generated by openeo-cloudmask {__version__} (`process_graphs/build_udp.py`); do not edit by hand.",
    ])
    return {
        "id": UDP_ID,
        "summary": "Sentinel-2 cloud and cloud-shadow mask (KappaMask classes) with an ONNX model",
        "description": description,
        "categories": ["cubes", "udf", "cloud"],
        "parameters": _parameters(card),
        "returns": {
            "description": "The mask, same x, y and t as `data`; bands as chosen by `output`.",
            "schema": {"type": "object", "subtype": "datacube"},
        },
        "process_graph": {"cloudmask1": neighborhood},
        "default_job_options": {
            "python-memory": f"{python_memory}m",
            "udf-dependency-archives": [f"{archive}#{ARCHIVE_FOLDER}"],
        },
    }


def render(udp: dict) -> str:
    return json.dumps(udp, indent=2, ensure_ascii=False) + "\n"


def generate(model: str = DEFAULT_MODEL, models_dir: Path = MODELS_DIR, memory_path: Path = MEMORY_PATH,
             *, use_env: bool = True) -> dict:
    """Build the UDP from the sources on disk (the model card, the UDF file, the memory record)."""
    card = load_card(model, models_dir)
    return build_udp(card, udf_source(), load_memory_record(card, memory_path), archive_url(card, use_env=use_env))


def udf_context(process_graph: dict) -> dict:
    """The ``context`` a backend would hand the UDF, with the UDP's parameter defaults filled in."""
    defaults = {p["name"]: p.get("default") for p in process_graph["parameters"]}
    node = process_graph["process_graph"]["cloudmask1"]["arguments"]["context"]
    return {key: defaults[value["from_parameter"]] for key, value in node.items()}


# --------------------------------------------------------------------------- memory


_MEASURE_SCRIPT = r"""
import json, resource, sys
import numpy as np, xarray as xr
from openeo.udf import UdfData, XarrayDataCube
from openeo.udf.run_code import run_udf_code

args = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
n = args["chunk_px"]
dn = np.empty((args["dates"], len(args["bands"]), n, n), dtype=np.float32)
for i in range(args["dates"]):  # date by date: no big temporary inflates the baseline
    dn[i] = rng.integers(300, 6000, size=dn.shape[1:], dtype=np.int16)
cube = xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={
    "t": np.datetime64("2023-04-01") + 5 * np.arange(args["dates"]).astype("timedelta64[D]"),
    "bands": args["bands"], "y": 5_000_000.0 - 10.0 * np.arange(n), "x": 500_000.0 + 10.0 * np.arange(n)})
code = open(args["udf_path"]).read()
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
baseline = kib()
out = run_udf_code(code=code, data=UdfData(datacube_list=[XarrayDataCube(cube)], user_context=args["context"]))
result = out.get_datacube_list()[0].get_array()
assert result.shape[0] == args["dates"], result.shape
print(json.dumps({"baseline_rss_mib": baseline / 1024, "peak_rss_mib": kib() / 1024,
                  "input_mib": dn.nbytes / 2**20}))
"""


def _measure_once(card: dict, model_dir: Path, dates: int, chunk_px: int) -> dict:
    args = {
        "chunk_px": chunk_px,
        "dates": dates,
        "bands": list(card["input"]["bands"]),
        "udf_path": udf_path(),
        "context": {"model": card["id"], "model_dir": str(model_dir)},
    }
    done = subprocess.run([sys.executable, "-c", _MEASURE_SCRIPT, json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise UdpBuildError(f"memory measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(card: dict, model_dir: Path, dates: int = MEASURE_DATES, chunk_px: int = None) -> dict:
    """Peak RSS of a fresh Python running the UDF (via ``run_udf_code``) on one chunk.

    The chunk is ``size + 2 * overlap`` pixels square (or ``chunk_px``), ``dates``
    dates, the card's bands, float32 digital numbers: what geopyspark hands the
    UDF. ``baseline_rss_mib`` is the interpreter with numpy, xarray and openeo
    imported and the chunk allocated (a backend's Python worker holds these
    anyway); ``peak_rss_mib`` is the maximum resident set of the whole process.
    A second run with one date gives the cost of each extra date
    (``per_date_mib``), for sizing ``python-memory`` for longer series.
    """
    size, overlap = neighborhood_window(card)
    chunk_px = chunk_px or size + 2 * overlap
    many = _measure_once(card, model_dir, dates, chunk_px)
    one = _measure_once(card, model_dir, 1, chunk_px)
    import onnxruntime

    return {
        "model": card["id"],
        "onnx_sha256": card["onnx_sha256"],
        "chunk_px": chunk_px,
        "dates": dates,
        "bands": list(card["input"]["bands"]),
        "dtype": "float32",
        "input_mib": round(many["input_mib"], 1),
        "baseline_rss_mib": round(many["baseline_rss_mib"], 1),
        "peak_rss_mib": round(many["peak_rss_mib"], 1),
        "peak_rss_mib_one_date": round(one["peak_rss_mib"], 1),
        "per_date_mib": round(max(many["peak_rss_mib"] - one["peak_rss_mib"], 0.0) / max(dates - 1, 1), 2),
        "python": ".".join(map(str, sys.version_info[:3])),
        "onnxruntime": onnxruntime.__version__,
        "ort_threads": os.environ.get("OPENEO_CLOUDMASK_ORT_THREADS") or "onnxruntime default",
        "how": "python process_graphs/build_udp.py --measure: resource.ru_maxrss of a fresh interpreter that "
               "runs the UDF file through openeo.udf.run_udf_code on a random float32 chunk",
    }


def udf_path() -> str:
    """Path of the UDF file (``udf/cloud_mask.py``), e.g. for ``openeo.UDF.from_file``."""
    import importlib.util

    return importlib.util.find_spec("openeo_cloudmask.udf.cloud_mask").origin


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_udp", description="Generate process_graphs/cloud_mask.json from the UDF and the model card."
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--measure", action="store_true", help="measure the UDF's memory per chunk first")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    parser.add_argument("--output", type=Path, default=UDP_PATH)
    parser.add_argument("--memory-record", type=Path, default=MEMORY_PATH)
    args = parser.parse_args(argv)
    try:
        if args.measure:
            card = load_card(args.model, args.models_dir)
            record = measure_memory(card, args.models_dir)
            args.memory_record.write_text(json.dumps(record, indent=2) + "\n")
            print(f"measured {record['peak_rss_mib']:.0f} MiB peak for {record['chunk_px']} px x {record['dates']} "
                  f"dates -> {args.memory_record}")
        text = render(generate(args.model, args.models_dir, args.memory_record))
    except UdpBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date; run `make udp`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
