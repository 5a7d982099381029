"""The body of the ``cloud_mask`` UDP: ``apply_neighborhood(run_udf)`` over the UDF file, on the card's chunks.

This is process-side code, shared by the UDP and the openeo-driver plugin
(``backend_plugin/openeo_driver_plugin.py``): the chunking rule
(:func:`neighborhood_window`) and the process graph (:func:`neighborhood_node`).
Everything that *releases* the UDP (its build, the dependency archive, the
memory probe, publishing, the hosting URL) lives in :mod:`openeo_cloudmask.release`,
which processes never import.

CDSE facts this module relies on (sources in docs/CDSE.md): ``apply_neighborhood``
with a UDF needs ``size`` in ``px`` and at least 32 px in x and y; ``t`` must be
``null`` (the whole time series per chunk) or ``P1D`` without overlap; the
overlap is cut off again after the UDF.
"""

from __future__ import annotations

import math
from pathlib import Path

#: geopyspark rejects UDF windows smaller than this (ProcessParameterInvalid on ``size``).
CDSE_MIN_UDF_SIZE = 32
#: UDP parameter -> UDF context key, where they differ (the UDP speaks the process spec's names).
CONTEXT_KEYS = {"buffer": "buffer_m"}


def udf_path() -> str:
    """Path of the UDF file (``udf/cloud_mask.py``), e.g. for ``openeo.UDF.from_file``."""
    import importlib.util

    return importlib.util.find_spec("openeo_cloudmask.udf.cloud_mask").origin


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


def neighborhood_node(udf: str, size: int, overlap: int, model_dir=None,
                      parameters=("processing_level", "radiometric_offset", "output", "buffer", "model")) -> dict:
    """``apply_neighborhood(run_udf)`` over the ``cloud_mask`` parameters: the body of the UDP and of the
    openeo-driver plugin's process. Each parameter (but ``data``) reaches the UDF context under its engine key
    (:data:`CONTEXT_KEYS`). ``model_dir`` pins the model folder (local backends and tests)."""
    context = {CONTEXT_KEYS.get(name, name): {"from_parameter": name} for name in parameters if name != "data"}
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


def udf_context(process: dict) -> dict:
    """The ``context`` a backend hands the UDF of a UDP (or process spec with this body), defaults filled in."""
    defaults = {p["name"]: p.get("default") for p in process["parameters"]}
    (node,) = process["process_graph"].values()
    return {key: defaults[value["from_parameter"]] for key, value in node["arguments"]["context"].items()}


def __getattr__(name: str):
    # Moved to the release package; kept importable here (lazily: processes never load it) for the README's snippet.
    if name == "udp_namespace_url":
        from openeo_cloudmask.release.settings import udp_namespace_url

        return udp_namespace_url
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
