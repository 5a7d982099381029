"""The ``cloud_mask`` process: the engine applied lazily, chunk by chunk, over a Dask-backed cube.

This door translates and nothing else: the process's parameters become the
engine's context keys (:data:`CONTEXT_KEYS`), the engine's errors become
openEO errors naming the parameter (by the error's ``key``), and the cube is
cut by :mod:`openeo_cloudmask.tiling` into chunks of the engine's
``Options.chunk`` carrying ``Options.halo`` pixels of context. Everything that
can be checked from metadata (parameters, dimensions, band labels, dtype, the
model card) is checked when the process node runs, before a single pixel is
computed. Each chunk is masked by
:func:`openeo_cloudmask.udf.cloud_mask.mask_cube` with its slice of the
cube's coordinates, so the engine puts its windows on the scene's global
grid and the result is bit-identical to the engine on the whole scene,
wherever chunk borders fall.

Traps:

- The ONNX session is created by the engine's ``lru_cache``d ``load_model``
  the first time a chunk runs in a process (Dask worker), behind a lock so
  that worker threads do not race to create one each; never in the client,
  which only reads the model card.
- The spec's defaults are the engine's: :func:`load_spec` fills them in from
  ``CONTEXT_DEFAULTS``, so ``cloud_mask.json`` does not repeat them.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask import tiling
from openeo_cloudmask.udf import cloud_mask as engine

from .errors import ProcessParameterInvalid, from_engine_error

SPEC_PATH = Path(__file__).with_name("cloud_mask.json")
PROCESS = "cloud_mask"
#: The process's parameters -> the engine's context keys: the whole translation this door does.
CONTEXT_KEYS = {
    "model": "model",
    "processing_level": "processing_level",
    "radiometric_offset": "radiometric_offset",
    "output": "output",
    "buffer": "buffer_m",
}
#: An engine error's ``key`` -> the parameter a user must change.
PARAMETER_OF_KEY = {key: name for name, key in CONTEXT_KEYS.items()}


def load_spec(path: Path = SPEC_PATH, context_keys: dict = None) -> dict:
    """The process spec (``cloud_mask.json``), each optional parameter's ``default`` taken from the engine.

    This is the one spec of ``cloud_mask``: the openeo-driver plugin and the
    UDP builder read it here too. ``context_keys`` maps parameter names to
    context keys (default :data:`CONTEXT_KEYS`).
    """
    context_keys = CONTEXT_KEYS if context_keys is None else context_keys
    spec = json.loads(Path(path).read_text())
    for parameter in spec["parameters"]:
        key = context_keys.get(parameter["name"])
        if key is not None and parameter.get("optional"):
            parameter["default"] = engine.CONTEXT_DEFAULTS[key]
    return spec


def context_from_arguments(arguments: dict) -> dict:
    """Process arguments (by parameter name) -> an engine context; arguments left out are left out."""
    return {CONTEXT_KEYS[name]: value for name, value in arguments.items() if name in CONTEXT_KEYS}


def engine_error(error: engine.CloudMaskError, process: str = PROCESS, parameter_of_key: dict = None):
    """The openEO error for an engine error, naming the parameter that ``parameter_of_key`` maps its ``key`` to."""
    by_key = PARAMETER_OF_KEY if parameter_of_key is None else parameter_of_key
    return from_engine_error(error, process, by_key.get(error.key, error.key or "data"))


def _mask_block(block: np.ndarray, block_info=None, *, bands: list, options, grid: dict) -> np.ndarray:
    """One chunk (t, bands, y, x) with its halo -> the engine's answer for it (runs on a worker).

    The chunk gets its slice of the cube's x/y coordinates, so the engine puts
    its windows on the same global grid as a whole-cube run (see ``grid_phase``).
    """
    coords = {"bands": bands}
    location = block_info[0]["chunk-location"]
    for axis, dim in ((2, "y"), (3, "x")):
        values, bounds = grid[dim]
        if values is not None:
            start, stop = bounds[location[axis]]
            coords[dim] = values[start:stop]
    cube = xr.DataArray(block, dims=("t", "bands", "y", "x"), coords=coords)
    return engine.mask_cube(cube, options).values


def mask_lazy(cube: xr.DataArray, context: dict, process: str = PROCESS, chunk_px: int = None,
              parameter_of_key: dict = None) -> xr.DataArray:
    """Validate ``cube`` and ``context`` from metadata, then return the lazy mask (nothing is computed).

    ``context`` takes the engine's keys (see the UDF docstring). Errors are
    openEO-style, name ``process`` and the parameter that ``parameter_of_key``
    (default :data:`PARAMETER_OF_KEY`) maps the error's key to.
    ``chunk_px`` overrides the chunk edge, ``Options.chunk`` (the card's
    ``recommended_chunk``). A Dask-backed input keeps its spatial chunks when
    every one of them holds at least the halo; any other axis is cut anew.
    """
    import dask.array as da

    try:
        options = engine.parse_context(context)
        model = options.describe()
        engine.check_tiling(options, model)
        data = engine.check_cube(cube, options, model)
    except engine.CloudMaskError as exc:
        raise engine_error(exc, process, parameter_of_key) from None

    pixel = options.pixel_size(model, engine.pixel_size_from_coords(cube))
    halo = options.halo(model, pixel)
    block_options = dataclasses.replace(options, pixel_size_m=pixel)  # one spacing for every chunk, even 1 px wide

    has_t = "t" in data.dims
    if not has_t:
        data = data.expand_dims("t", axis=0)
    array = data.data
    lazy_input = isinstance(array, da.Array)
    if not lazy_input:
        array = da.from_array(np.asarray(array), chunks=-1)
    chunk = chunk_px or block_options.local_chunk(model)
    chunks = (1, -1) + tuple(
        tiling.axis_chunks(array.shape[axis], chunk, halo, array.chunks[axis] if lazy_input else None) for axis in (2, 3)
    )
    array = array.rechunk(chunks)
    grown, depth = tiling.overlap(array, {2: halo, 3: halo})
    grid = {
        dim: (np.asarray(data.coords[dim].values) if dim in data.coords else None,
              tiling.grown_bounds(array.chunks[axis], depth[axis]))
        for axis, dim in ((2, "y"), (3, "x"))
    }
    names = options.band_names
    masked = grown.map_blocks(
        _mask_block,
        bands=list(model.bands),
        options=block_options,
        grid=grid,
        chunks=(grown.chunks[0], (len(names),), grown.chunks[2], grown.chunks[3]),
        dtype=options.dtype,
        meta=np.empty((0, 0, 0, 0), dtype=options.dtype),
        token=f"cloud-mask-{options.output}",
    )
    result = tiling.trim(masked, depth)
    if not has_t:
        result = result[0]
    coords = {name: coord for name, coord in data.coords.items() if "bands" not in coord.dims}
    if not has_t:
        coords = {name: coord for name, coord in coords.items() if "t" not in coord.dims}
    coords["bands"] = names
    out_dims = [d for d in ("t", "bands", "y", "x") if d in cube.dims]
    out = xr.DataArray(result, dims=out_dims, coords=coords, attrs=dict(cube.attrs), name="cloud_mask")
    return out.transpose(*cube.dims)


def cloud_mask(data, model=None, processing_level=None, radiometric_offset=None, output=None, buffer=None, *,
               model_dir=None, chunk_px=None):
    """The openEO process ``cloud_mask`` (spec: ``cloud_mask.json``; defaults: the engine's).

    ``model_dir`` is set by the back-end, not the user.
    """
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid(PROCESS, "data", f"expected a raster data cube, got {type(data).__name__}")
    arguments = {"model": model, "processing_level": processing_level, "radiometric_offset": radiometric_offset,
                 "output": output, "buffer": buffer}
    context = dict(context_from_arguments(arguments), model_dir=model_dir)
    return mask_lazy(data, context, process=PROCESS, chunk_px=chunk_px)


def neighborhood_graph(udf_code: str, size: int, overlap: int, model_dir=None) -> dict:
    """``cloud_mask`` as a process graph: ``apply_neighborhood(run_udf)`` over the process's parameters.

    The body of the openeo-driver plugin's process and of the UDP. The UDF
    context maps every parameter onto its context key (:data:`CONTEXT_KEYS`);
    ``model_dir`` pins the model folder (local backends and tests). ``size``
    and ``overlap`` are usually the engine's ``Options.chunk`` and
    ``Options.halo`` for the model (see :func:`neighborhood_window`).
    """
    context = {key: {"from_parameter": name} for name, key in CONTEXT_KEYS.items()}
    if model_dir is not None:
        context["model_dir"] = str(model_dir)
    run_udf = {
        "process_id": "run_udf",
        "arguments": {"data": {"from_parameter": "data"}, "udf": udf_code, "runtime": "Python",
                      "context": {"from_parameter": "context"}},
        "result": True,
    }
    node = {
        "process_id": "apply_neighborhood",
        "arguments": {
            "data": {"from_parameter": "data"},
            "process": {"process_graph": {"runudf1": run_udf}},
            "size": [{"dimension": "x", "value": size, "unit": "px"}, {"dimension": "y", "value": size, "unit": "px"},
                     {"dimension": "t", "value": None}],
            "overlap": [{"dimension": "x", "value": overlap, "unit": "px"},
                        {"dimension": "y", "value": overlap, "unit": "px"}],
            "context": context,
        },
        "result": True,
    }
    return {"cloudmask1": node}


def neighborhood_window(model: str = None, model_dir=None) -> tuple:
    """``(size, overlap)`` of ``apply_neighborhood`` for ``model``: the engine's chunk and halo (no buffer)."""
    options = engine.parse_context({"model": model, "model_dir": model_dir})
    card = options.describe()
    return options.chunk(card), options.halo(card)
