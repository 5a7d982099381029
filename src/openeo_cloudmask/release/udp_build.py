"""Build the ``cloud_mask`` UDP: ``process_graphs/cloud_mask.json``, generated and never edited by hand.

Sources, each written once elsewhere:

1. the process spec ``backend_plugin/cloud_mask.json`` (id, summary, parameters, returns):
   the UDP's parameter list *is* the spec's;
2. the UDF file ``udf/cloud_mask.py`` and the process body, the process's own
   :func:`openeo_cloudmask.backend_plugin.cloud_mask.neighborhood_graph` (``apply_neighborhood``
   on the engine's chunk and halo for the card, at least CDSE's 32 px);
3. the model card and ONNX file, ``models/<model>.json`` / ``.onnx``;
4. the measured memory per chunk (``process_graphs/cloud_mask.memory.json``, :mod:`.memory_probe`),
   which sizes ``python-memory``.

Two forms:

- **self-contained** (default, needs no hosting): the ONNX file and its card are appended
  to the UDF code as base64 (``EMBEDDED_MODELS``, sha256 checked when the UDF loads
  them), so the UDF loads the model from its own text. onnxruntime comes from the public
  ``onnx_deps`` archive that CDSE's ONNX UDPs use, named in the default job options; the
  UDF's PEP 723 block stays as a fallback. The JSON must stay under the 2 MiB openEO
  request limit (:data:`MAX_UDP_BYTES`); the build refuses otherwise.
- **archive**: the plain UDF, with model and onnxruntime in our dependency archive
  (:mod:`.archive`) at the release URL; refused while no release URL is set.

``make udp`` (``python process_graphs/build_udp.py``) rebuilds; ``make udp MEASURE=1``
measures the memory first. ``tests/test_udp.py`` fails when the committed file drifts.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import sys
from pathlib import Path

from openeo_cloudmask import udp as body
from openeo_cloudmask.backend_plugin import cloud_mask as process
from openeo_cloudmask._version import __version__
from openeo_cloudmask.release.settings import MEMORY_PATH, MODELS_DIR, UDP_ID, UDP_PATH, ReleaseError, dependency_archive_option
from openeo_cloudmask.udf import cloud_mask as engine

#: openeo-python-driver refuses request bodies over 2 MiB (its Flask MAX_CONTENT_LENGTH).
MAX_UDP_BYTES = 2 * 1024 * 1024
#: ``python-memory`` = the measured peak at DESIGN_DATES dates per chunk x this margin, rounded up to 256 MiB.
MEMORY_MARGIN = 1.25
#: Dates per chunk ``python-memory`` is sized for: one year at Sentinel-2's 5-day revisit. With ``t`` null every
#: chunk carries its whole time series, and the UDF's memory grows linearly with it.
DESIGN_DATES = 73
#: One UDF task per executor and one CPU per task: Python gets all of ``python-memory`` for one chunk whatever way
#: Spark shares it between workers, and onnxruntime runs TASK_CPUS threads (written into the self-contained UDF).
EXECUTOR_CORES = 1
TASK_CPUS = 1
FORMS = ("self-contained", "archive")
#: geopyspark rejects UDF windows smaller than this (ProcessParameterInvalid on ``size``).
CDSE_MIN_UDF_SIZE = 32


# --------------------------------------------------------------------------- sources


def load_card(model: str = engine.DEFAULT_MODEL, models_dir: Path = MODELS_DIR) -> dict:
    path = Path(models_dir) / f"{model}.json"
    if not path.is_file():
        raise ReleaseError(
            f"model card {path} not found: the UDP takes its chunk and its model from the card of model {model!r}. "
            f"Train or copy the model into {models_dir} (or pass --model/--models-dir), then run `make udp`"
        )
    return json.loads(path.read_text())


def model_files(card: dict, models_dir: Path = MODELS_DIR) -> tuple:
    """``(card bytes, onnx bytes)`` exactly as on disk, the ONNX checked against the card's sha256."""
    directory = Path(models_dir)
    onnx_path = directory / card["onnx_file"]
    if not onnx_path.is_file():
        raise ReleaseError(f"{directory / (card['id'] + '.json')} names {onnx_path.name}, which is missing")
    onnx = onnx_path.read_bytes()
    if hashlib.sha256(onnx).hexdigest() != card["onnx_sha256"]:
        raise ReleaseError(f"{onnx_path} does not match the sha256 in its card: re-export the model or fix the card")
    return (directory / f"{card['id']}.json").read_bytes(), onnx


def load_process_spec() -> dict:
    """The one spec of process id ``cloud_mask`` (``backend_plugin/cloud_mask.json``, defaults from the engine)."""
    return process.load_spec()


def embedded_udf_code(source: str, card_bytes: bytes, onnx_bytes: bytes, threads: int = TASK_CPUS) -> str:
    """The UDF file with the model and its card appended as base64: the UDF then needs no model files.

    The block also sets the engine's thread variable (unless the backend set it) to the CPUs one
    task gets (``task-cpus``), so onnxruntime does not start a thread per core of the machine.
    """
    card = json.loads(card_bytes)
    return (
        f"{source.rstrip()}\n\n\n"
        f"# ----- appended by openeo-cloudmask {__version__} (openeo_cloudmask.release.udp_build): model "
        f"{card['id']} v{card['version']}, sha256 {card['onnx_sha256']}\n"
        f"os.environ.setdefault(THREADS_ENV, {str(threads)!r})\n"
        f"EMBEDDED_MODELS[{card['id']!r}] = {{\n"
        f"    \"card\": \"{base64.b64encode(card_bytes).decode()}\",\n"
        f"    \"onnx\": \"{base64.b64encode(onnx_bytes).decode()}\",\n"
        f"}}\n"
    )


def neighborhood_window(card: dict) -> tuple:
    """``(size, overlap)`` in px of the UDP's ``apply_neighborhood``: the engine's chunk and halo for ``card``.

    The engine owns both (``Options.chunk``: the card's ``recommended_chunk``;
    ``Options.halo`` without a buffer: its ``recommended_overlap``); CDSE adds a
    minimum of 32 px for UDF windows, and the size stays a multiple of the
    card's ``size_multiple``. Each chunk the UDF sees is ``size + 2 * overlap`` wide.
    """
    model = engine.CloudMaskModel(card, None, Path(card["onnx_file"]))
    options = engine.parse_context({})
    multiple = int(card["tiling"].get("size_multiple", 1))
    size = int(math.ceil(max(options.chunk(model), CDSE_MIN_UDF_SIZE) / multiple) * multiple)
    return size, options.halo(model)


def udf_context(udp: dict) -> dict:
    """The ``context`` a backend hands the UDF of ``udp``, with the parameter defaults filled in."""
    defaults = {p["name"]: p.get("default") for p in udp["parameters"]}
    (node,) = udp["process_graph"].values()
    return {key: defaults[value["from_parameter"]] for key, value in node["arguments"]["context"].items()}


# --------------------------------------------------------------------------- memory


def load_memory_record(card: dict, path: Path = MEMORY_PATH) -> dict:
    """The committed memory measurement, checked against the card and chunk it must describe."""
    size, overlap = neighborhood_window(card)
    command = "make udp MEASURE=1  (python process_graphs/build_udp.py --measure)"
    if not Path(path).is_file():
        raise ReleaseError(f"no memory measurement at {path}; run `{command}`")
    record = json.loads(Path(path).read_text())
    expected = {"model": card["id"], "onnx_sha256": card["onnx_sha256"], "chunk_px": size + 2 * overlap,
                "ort_threads": TASK_CPUS, "design_dates": DESIGN_DATES}
    found = {key: record.get(key) for key in expected}
    if found != expected:
        raise ReleaseError(f"{path} was measured for {found}, but the UDP now needs {expected}; run `{command}`")
    return record


def peak_mib(memory: dict, dates: int) -> float:
    """Peak RSS for a chunk of ``dates`` dates: measured if it was, else on the line through the measured runs."""
    runs = sorted(memory["runs"], key=lambda run: run["dates"])
    for run in runs:
        if run["dates"] == dates:
            return run["peak_rss_mib"]
    first, last = runs[0], runs[-1]
    slope = (last["peak_rss_mib"] - first["peak_rss_mib"]) / max(last["dates"] - first["dates"], 1)
    return first["peak_rss_mib"] + slope * (dates - first["dates"])


def per_date_mib(memory: dict) -> float:
    return (peak_mib(memory, DESIGN_DATES) - peak_mib(memory, 1)) / (DESIGN_DATES - 1)


def python_memory_mib(memory: dict) -> int:
    """``python-memory`` in MiB: the peak at DESIGN_DATES dates x MEMORY_MARGIN, rounded up to 256 MiB."""
    return int(math.ceil(peak_mib(memory, DESIGN_DATES) * MEMORY_MARGIN / 256.0) * 256)


def max_dates(memory: dict, python_memory: int) -> int:
    """The most dates per chunk that keep 25 % headroom under ``python_memory`` MiB."""
    slope = per_date_mib(memory)
    return int(1 + (python_memory / MEMORY_MARGIN - peak_mib(memory, 1)) // slope)


def memory_table(memory: dict) -> str:
    """The memory table of docs/CDSE.md (a test keeps the two equal)."""
    limit = python_memory_mib(memory)
    rows = ["| dates per chunk | measured peak (MiB) | headroom under the default `python-memory` "
            f"{limit}m |", "|---:|---:|---:|"]
    for run in sorted(memory["runs"], key=lambda run: run["dates"]):
        headroom = 100.0 * (limit - run["peak_rss_mib"]) / run["peak_rss_mib"]
        rows.append(f"| {run['dates']} | {run['peak_rss_mib']:.0f} | {headroom:.0f} % |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- the UDP


def job_options(memory: dict, archive_option: str = None) -> dict:
    """The UDP's ``default_job_options``; a user's own job options override them key by key."""
    archives = [archive_option] if archive_option else [engine.ONNX_DEPS_ARCHIVE]
    return {
        "executor-cores": EXECUTOR_CORES,
        "task-cpus": TASK_CPUS,
        "python-memory": f"{python_memory_mib(memory)}m",
        "udf-dependency-archives": archives,
    }


def build_udp(card: dict, udf: str, memory: dict, spec: dict, archive_option: str = None) -> dict:
    """The UDP as a dict: a pure function of its sources (tests build it in memory from the tiny model).

    ``udf`` is the UDF code (self-contained or plain); ``archive_option`` the ``udf-dependency-archives``
    entry of the archive form (None: the self-contained form, with the public onnx_deps archive).
    """
    size, overlap = neighborhood_window(card)
    (node,) = process.neighborhood_graph(udf, size, overlap).values()
    parameters = json.loads(json.dumps(spec["parameters"]))
    for parameter in parameters:
        if parameter["name"] == "model":
            parameter["default"] = card["id"]
    options = job_options(memory, archive_option)
    chunk = size + 2 * overlap
    where = ("carried inside the UDF code (base64, sha256 checked at load)" if archive_option is None
             else f"taken from the dependency archive `{archive_option}`")
    description = "\n\n".join([
        spec["description"],
        f"Runs as a Python UDF in `apply_neighborhood` chunks of {size} px plus {overlap} px overlap on each side, "
        f"all dates of a chunk at once. The model (`{card['id']}` v{card['version']}) is {where}; onnxruntime "
        f"comes from the job option `udf-dependency-archives`.",
        f"Memory: one {chunk} x {chunk} px chunk peaks at {peak_mib(memory, 1):.0f} MiB with one date and grows by "
        f"{per_date_mib(memory):.1f} MiB per date. The default `python-memory` {options['python-memory']} keeps 25 % "
        f"headroom up to {max_dates(memory, python_memory_mib(memory))} dates per chunk; add "
        f"{math.ceil(per_date_mib(memory) * MEMORY_MARGIN)}m per further date.",
        f"Generated by openeo-cloudmask {__version__} (`make udp`); do not edit by hand.",
    ])
    udp = {
        "id": UDP_ID,
        "summary": spec["summary"],
        "description": description,
        "categories": spec.get("categories", []),
        "parameters": parameters,
        "returns": spec["returns"],
        "process_graph": {"cloudmask1": node},
        "default_job_options": options,
    }
    if spec.get("links"):
        udp["links"] = spec["links"]
    return udp


def render(udp: dict) -> str:
    """The UDP as JSON text; refuses one over :data:`MAX_UDP_BYTES` (no openEO backend would accept it)."""
    text = json.dumps(udp, indent=2, ensure_ascii=False) + "\n"
    size = len(text.encode())
    if size > MAX_UDP_BYTES:
        raise ReleaseError(
            f"the UDP is {size / 2**20:.2f} MiB, over the 2 MiB openEO request limit: ship a smaller model, or "
            f"build the archive form (--form archive) with a release URL"
        )
    return text


def generate(model: str = engine.DEFAULT_MODEL, models_dir: Path = MODELS_DIR, memory_path: Path = MEMORY_PATH,
             form: str = "self-contained") -> dict:
    """Build the UDP from the sources on disk."""
    card = load_card(model, models_dir)
    memory = load_memory_record(card, memory_path)
    if form == "archive":
        return build_udp(card, body.udf_source(), memory, load_process_spec(), dependency_archive_option(card["id"]))
    code = embedded_udf_code(body.udf_source(), *model_files(card, models_dir))
    return build_udp(card, code, memory, load_process_spec())


def udf_code(udp: dict) -> str:
    """The ``run_udf`` code inside a UDP built here."""
    (node,) = udp["process_graph"].values()
    return node["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]["udf"]


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_udp", description="Generate process_graphs/cloud_mask.json from the spec, the UDF and the model."
    )
    parser.add_argument("--model", default=engine.DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--form", choices=FORMS, default="self-contained")
    parser.add_argument("--measure", action="store_true", help="measure the UDF's memory per chunk first")
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is out of date")
    parser.add_argument("--output", type=Path, default=UDP_PATH)
    parser.add_argument("--memory-record", type=Path, default=MEMORY_PATH)
    args = parser.parse_args(argv)
    try:
        if args.measure:
            from openeo_cloudmask.release.memory_probe import measure_memory

            card = load_card(args.model, args.models_dir)
            code = embedded_udf_code(body.udf_source(), *model_files(card, args.models_dir))
            size, overlap = neighborhood_window(card)
            record = measure_memory(card, code, design_dates=DESIGN_DATES, threads=TASK_CPUS,
                                    chunk_px=size + 2 * overlap)
            args.memory_record.write_text(json.dumps(record, indent=2) + "\n")
            runs = ", ".join(f"{run['dates']} dates {run['peak_rss_mib']:.0f} MiB" for run in record["runs"])
            print(f"measured {runs} for {record['chunk_px']} px chunks -> {args.memory_record}")
        udp = generate(args.model, args.models_dir, args.memory_record, args.form)
        text = render(udp)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the committed UDP comes with its APEx entry (process_graphs/apex/), generated from it
    from openeo_cloudmask.release import apex

    entry = apex.entry_files(udp, load_card(args.model, args.models_dir)) if args.output == UDP_PATH else {}
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        stale = [str(args.output)] if current != text else []
        for relative, content in entry.items():
            path = apex.CATALOG / relative
            if not path.is_file() or path.read_text() != content:
                stale.append(str(path))
        if stale:
            print(f"{', '.join(stale)} out of date; run `make udp`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.encode()) / 2**20:.2f} MiB)")
    if entry:
        apex.write_entry(udp, load_card(args.model, args.models_dir))
        print(f"wrote the APEx entry under {apex.CATALOG}")
    return 0
