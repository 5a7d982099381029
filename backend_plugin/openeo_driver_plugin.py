"""Register ``cloud_mask`` in an openeo-python-driver backend (geopyspark, the dummy backend, ...).

Call :func:`register` once while the backend starts (nothing happens at
import; openeo-driver is imported inside the function). The process is a
*custom process from a process graph*, the driver's mechanism for processes
built from other processes: ``apply_neighborhood`` with a ``run_udf`` child
that runs ``udf/cloud_mask.py`` (embedded verbatim) on chunks of the model
card's ``recommended_chunk`` plus ``recommended_overlap`` each side. In front
of it sits a process function that validates every argument with the driver's
``ProcessArgs`` (types, enums, ranges, unknown arguments, the cube's band
labels from its metadata) and raises the driver's own openEO API exceptions,
so a user gets ``ProcessParameterInvalid`` with a message before any job runs.

The model must reach the UDF as on any backend: through the job option
``udf-dependency-archives`` (``<url>#cloudmask_deps``), or for local tests
through ``model_dir``, which is then written into the UDF context.

openeo-driver pins an older pystac than openeo-processes-dask needs: install
it in its own environment (``pip install -e ".[driver]"``, see ``make test-driver``).
"""

import json
import re
from pathlib import Path

from openeo_cloudmask.udf import cloud_mask as engine

SPEC_PATH = Path(__file__).with_name("cloud_mask.json")
UDF_PATH = Path(engine.__file__)
PROCESS_ID = "cloud_mask"
_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def neighborhood_process_graph(udf_code: str, size: int, overlap: int, model_dir=None) -> dict:
    """``apply_neighborhood(run_udf)`` over the graph parameters of ``cloud_mask`` (the UDP's process graph)."""
    from openeo_cloudmask.udp import neighborhood_node

    return {"cloudmask1": neighborhood_node(udf_code, size, overlap, model_dir)}


def _card(model: str, model_dir) -> dict:
    return engine.describe_model(model, model_dir).card


def make_process_function(spec: dict, evaluate, model_dir=None):
    """The driver process function: ``ProcessArgs`` validation, then the process graph (``evaluate``)."""
    from openeo_driver.datacube import DriverDataCube
    from openeo_driver.errors import ProcessParameterInvalidException, ProcessParameterUnsupportedException
    from openeo_driver.processes import ProcessArgs

    known = [p["name"] for p in spec["parameters"]]
    defaults = {p["name"]: p.get("default") for p in spec["parameters"]}
    enums = {p["name"]: p["schema"]["enum"] for p in spec["parameters"] if isinstance(p["schema"], dict) and "enum" in p["schema"]}

    def number_in(low, high, what):
        return ProcessArgs.validator_generic(
            lambda v: not isinstance(v, bool) and low <= v <= high, f"must be {what} between {low} and {high}"
        )

    def cloud_mask(args, env):
        args = ProcessArgs.cast(args, process_id=PROCESS_ID)
        for name in args:
            if name not in known:
                raise ProcessParameterUnsupportedException(process=PROCESS_ID, parameter=name)
        data = args.get_required("data", expected_type=DriverDataCube)
        model = args.get_optional(
            "model", default=defaults["model"], expected_type=str,
            validator=ProcessArgs.validator_generic(lambda v: bool(_MODEL_PATTERN.match(v)), "must be a model id like 'cloudmask-s2-4band'"),
        )
        level = args.get_enum("processing_level", options=enums["processing_level"], default=defaults["processing_level"])
        offset = args.get_optional("radiometric_offset", default=0, expected_type=(int, float), validator=number_in(0, 10000, "a number"))
        output = args.get_enum("output", options=enums["output"], default=defaults["output"])
        buffer = args.get_optional("buffer", default=0, expected_type=(int, float), validator=number_in(0, 5000, "a distance in metres"))
        if buffer and output == "probabilities":
            raise ProcessParameterInvalidException(
                parameter="buffer", process=PROCESS_ID, reason="a buffer applies to output 'classes' or 'cloud_detection', not 'probabilities'"
            )
        try:
            needed = list(_card(model, model_dir)["input"]["bands"])
        except engine.CloudMaskError:
            needed = None  # the card lives in the dependency archive on the workers: the UDF checks the bands there
        metadata = getattr(data, "metadata", None)
        if needed and metadata is not None and metadata.has_band_dimension():
            missing = [b for b in needed if b not in metadata.band_names]
            if missing:
                raise ProcessParameterInvalidException(
                    parameter="data", process=PROCESS_ID,
                    reason=f"bands {missing} are missing: model {model!r} needs {needed}, the cube has {metadata.band_names}; "
                    f"add them to load_collection(bands=...)",
                )
        values = {"data": data, "model": model, "processing_level": level, "radiometric_offset": offset, "output": output, "buffer": buffer}
        return evaluate(values, env)

    return cloud_mask


def register(process_registries=None, model: str = engine.DEFAULT_MODEL, model_dir=None, size: int = None, overlap: int = None):
    """Register ``cloud_mask`` (spec ``cloud_mask.json``) in openeo-driver process registries; return the function.

    ``process_registries`` default to the driver's global 1.x and 2.x
    registries. ``size``/``overlap`` default to the model card's
    ``recommended_window``/``recommended_overlap`` (the card must be readable here).
    """
    from openeo_driver.ProcessGraphDeserializer import (
        custom_process_from_process_graph,
        process_registry_2xx,
        process_registry_100,
    )
    from openeo_driver.processes import ProcessRegistry

    if process_registries is None:
        process_registries = (process_registry_100, process_registry_2xx)
    spec = json.loads(SPEC_PATH.read_text())
    if size is None or overlap is None:
        from openeo_cloudmask.udp import neighborhood_window  # the UDP's size and overlap: one rule for both

        card_size, card_overlap = neighborhood_window(_card(model, model_dir))
        size = card_size if size is None else size
        overlap = card_overlap if overlap is None else overlap
    graph_spec = {**spec, "process_graph": neighborhood_process_graph(UDF_PATH.read_text(), size, overlap, model_dir)}
    scratch = ProcessRegistry()
    custom_process_from_process_graph(graph_spec, process_registries=[scratch], hidden=True)
    function = make_process_function(spec, scratch.get_function(PROCESS_ID), model_dir=model_dir)
    for registry in process_registries:
        registry.add_function(function, name=PROCESS_ID, spec=spec, allow_override=True)
    return function
