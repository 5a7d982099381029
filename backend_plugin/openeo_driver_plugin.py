"""Register ``cloud_mask`` in an openeo-python-driver backend (geopyspark, the dummy backend, ...).

Call :func:`register` once while the backend starts (nothing happens at
import; openeo-driver is imported inside the function). The process is a
*custom process from a process graph*, the driver's mechanism for processes
built from other processes: ``apply_neighborhood`` with a ``run_udf`` child
that runs ``udf/cloud_mask.py`` (embedded verbatim) on chunks of the engine's
``Options.chunk`` plus ``Options.halo`` each side (:func:`.cloud_mask.neighborhood_graph`).
In front of it sits a process function that validates every argument with the
driver's ``ProcessArgs`` against the one spec, ``cloud_mask.json`` as
:func:`.cloud_mask.load_spec` gives it (types, enums, ranges, pattern, unknown
arguments), then asks the engine (``parse_context``, the card's bands against
the cube's metadata), and raises the driver's own openEO API exceptions, so a
user gets ``ProcessParameterInvalid`` with a message before any job runs.

The model must reach the UDF as on any backend: through the job option
``udf-dependency-archives`` (``<url>#cloudmask_deps``), or for local tests
through ``model_dir``, which is then written into the UDF context.

openeo-driver pins an older pystac than openeo-processes-dask needs: install
it in its own environment (``pip install -e ".[driver]"``, see ``make test-driver``).
"""

import re
from pathlib import Path

from openeo_cloudmask.udf import cloud_mask as engine

from . import cloud_mask as process

UDF_PATH = Path(engine.__file__)
PROCESS_ID = process.PROCESS


def check_band_labels(options, metadata) -> None:
    """The engine's cube check on the band labels of the driver's cube metadata (no pixels: a 0 x 0 stand-in).

    Skipped where the card is not readable here (it lives in the dependency
    archive on the workers, and the UDF checks the bands there) or the cube
    has no band dimension in its metadata.
    """
    import numpy as np
    import xarray as xr

    if metadata is None or not metadata.has_band_dimension():
        return
    try:
        model = options.describe()
    except engine.ModelFileError:
        return
    labels = list(metadata.band_names)
    stand_in = xr.DataArray(np.zeros((len(labels), 0, 0), dtype=np.uint16), dims=("bands", "y", "x"),
                            coords={"bands": labels})
    engine.check_cube(stand_in, options, model)


def make_process_function(spec: dict, evaluate, model_dir=None):
    """The driver process function: ``ProcessArgs`` validation from ``spec``, the engine's checks, then ``evaluate``."""
    from openeo_driver.datacube import DriverDataCube
    from openeo_driver.errors import ProcessParameterInvalidException, ProcessParameterUnsupportedException
    from openeo_driver.processes import ProcessArgs

    parameters = {p["name"]: p for p in spec["parameters"]}

    def validator(name):
        schema = parameters[name]["schema"]
        low, high, pattern = schema.get("minimum"), schema.get("maximum"), schema.get("pattern")
        if pattern is not None:
            return ProcessArgs.validator_generic(lambda v: bool(re.match(pattern, v)), f"must match {pattern}")
        if low is None and high is None:
            return None
        low = float("-inf") if low is None else low
        high = float("inf") if high is None else high
        return ProcessArgs.validator_generic(
            lambda v: not isinstance(v, bool) and low <= v <= high, f"must be a number between {low} and {high}"
        )

    def argument(args, name):
        schema, default = parameters[name]["schema"], parameters[name].get("default")
        if "enum" in schema:
            return args.get_enum(name, options=schema["enum"], default=default)
        expected = str if schema.get("type") == "string" else (int, float)
        return args.get_optional(name, default=default, expected_type=expected, validator=validator(name))

    def cloud_mask(args, env):
        args = ProcessArgs.cast(args, process_id=PROCESS_ID)
        for name in args:
            if name not in parameters:
                raise ProcessParameterUnsupportedException(process=PROCESS_ID, parameter=name)
        data = args.get_required("data", expected_type=DriverDataCube)
        values = {name: argument(args, name) for name in process.CONTEXT_KEYS}
        try:
            options = engine.parse_context(dict(process.context_from_arguments(values), model_dir=model_dir))
            check_band_labels(options, getattr(data, "metadata", None))
        except engine.CloudMaskError as exc:
            parameter = process.PARAMETER_OF_KEY.get(exc.key, "data")
            raise ProcessParameterInvalidException(parameter=parameter, process=PROCESS_ID, reason=str(exc)) from None
        return evaluate({"data": data, **values}, env)

    return cloud_mask


def register(process_registries=None, model: str = None, model_dir=None, size: int = None, overlap: int = None):
    """Register ``cloud_mask`` (spec ``cloud_mask.json``) in openeo-driver process registries; return the function.

    ``process_registries`` default to the driver's global 1.x and 2.x
    registries. ``size``/``overlap`` default to the engine's chunk and halo
    for ``model`` (default: the engine's default model), read from its card,
    which must be readable here.
    """
    from openeo_driver.ProcessGraphDeserializer import (
        custom_process_from_process_graph,
        process_registry_2xx,
        process_registry_100,
    )
    from openeo_driver.processes import ProcessRegistry

    if process_registries is None:
        process_registries = (process_registry_100, process_registry_2xx)
    spec = process.load_spec()
    if size is None or overlap is None:
        card_size, card_overlap = process.neighborhood_window(model, model_dir)
        size = card_size if size is None else size
        overlap = card_overlap if overlap is None else overlap
    graph_spec = {**spec, "process_graph": process.neighborhood_graph(UDF_PATH.read_text(), size, overlap, model_dir)}
    scratch = ProcessRegistry()
    custom_process_from_process_graph(graph_spec, process_registries=[scratch], hidden=True)
    function = make_process_function(spec, scratch.get_function(PROCESS_ID), model_dir=model_dir)
    for registry in process_registries:
        registry.add_function(function, name=PROCESS_ID, spec=spec, allow_override=True)
    return function
