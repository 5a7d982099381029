"""The ``cloud_mask`` process: the engine applied lazily, chunk by chunk, over a Dask-backed cube.

Everything that can be checked from metadata (parameters, dimensions, band
labels, dtype, the model card) is checked when the process node runs, before
a single pixel is computed; errors are openEO-style (:mod:`.errors`). The
masking itself is :func:`openeo_cloudmask.udf.cloud_mask.mask_cube`, called on
each chunk grown by a halo of the card's ``recommended_overlap`` plus the
``buffer`` in pixels (``dask.array.overlap`` with ``boundary="none"``), and the
halo is trimmed off afterwards. The halo covers the receptive field's reach,
and the engine puts its windows on the scene's global grid, so the result is
bit-identical to the engine on the whole scene, wherever chunk borders fall.

Traps:

- The ONNX session is created by the engine's ``lru_cache``d ``load_model``
  the first time a chunk runs in a process (Dask worker), behind a lock so
  that worker threads do not race to create one each; never in the client,
  which only reads the model card.
- The result's dtype is uint8 for ``classes`` and float32 otherwise.
"""

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask.udf import cloud_mask as engine

from .errors import ProcessParameterInvalid, from_engine_error

SPEC_PATH = Path(__file__).with_name("cloud_mask.json")


def load_spec(path: Path = SPEC_PATH) -> dict:
    return json.loads(Path(path).read_text())


describe_model = engine.describe_model


def _spatial_chunks(length: int, current, chunk: int, halo: int) -> tuple:
    """Chunks along a spatial axis: keep the existing ones unless a chunk is smaller than the halo."""
    if current is not None and min(current) >= halo:
        return tuple(current)
    chunk = max(chunk, halo, 1)
    sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
    if len(sizes) > 1 and sizes[-1] < halo:  # fold a sliver into its neighbour: dask needs chunk >= depth
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def _mask_block(block: np.ndarray, block_info=None, *, bands: list, context: dict, grid: dict) -> np.ndarray:
    """One chunk (t, bands, y, x) with its halo -> the engine's answer for it (runs on a worker).

    The chunk gets its slice of the cube's x/y coordinates, so the engine puts
    its windows on the same global grid as a whole-cube run (see ``grid_phase``).
    """
    coords = {"bands": bands}
    location = block_info[0]["chunk-location"]
    for axis, dim in ((2, "y"), (3, "x")):
        values, starts, halo = grid[dim]
        if values is not None:
            index = location[axis]
            first = starts[index] - (halo if index > 0 else 0)  # boundary="none": no halo before the first chunk
            coords[dim] = values[first : first + block.shape[axis]]
    cube = xr.DataArray(block, dims=("t", "bands", "y", "x"), coords=coords)
    return engine.mask_cube(cube, context).values


def mask_lazy(cube: xr.DataArray, context: dict, process: str = "cloud_mask", chunk_px: int = None) -> xr.DataArray:
    """Validate ``cube`` and ``context`` from metadata, then return the lazy mask (nothing is computed).

    ``context`` takes the engine's keys (see the UDF docstring). Errors are
    openEO-style and name ``process``. ``chunk_px`` sets the spatial chunk
    edge for an input that is not Dask-backed yet (default: the card's window
    minus two halos); Dask-backed inputs keep their spatial chunks.
    """
    import dask.array as da

    try:
        options = engine.parse_context(context)
        model = describe_model(options["model"], options["model_dir"])
        data = engine.check_cube(cube, options, model)
    except engine.CloudMaskError as exc:
        raise from_engine_error(exc, process, _parameter_of(exc)) from None

    pixel = engine.pixel_size_from_coords(cube) or options["pixel_size_m"] or model.resolution_m
    radius = int(round(options["buffer_m"] / pixel))
    overlap = model.overlap if options["window_overlap"] is None else options["window_overlap"]
    halo = overlap + radius
    block_context = {k: v for k, v in context.items() if v is not None}
    block_context["pixel_size_m"] = pixel  # chunks carry no coordinates: pass the grid spacing explicitly

    has_t = "t" in data.dims
    if not has_t:
        data = data.expand_dims("t", axis=0)
    array = data.data
    lazy_input = isinstance(array, da.Array)
    if not lazy_input:
        array = da.from_array(np.asarray(array), chunks=-1)
    # Default: chunk + 2 halos fill one engine window, the least halo recomputed per pixel without inner seams.
    default_chunk = chunk_px or max(model.window - 2 * halo, halo)
    chunks = (
        1,
        -1,
        _spatial_chunks(array.shape[2], array.chunks[2] if lazy_input else None, default_chunk, halo),
        _spatial_chunks(array.shape[3], array.chunks[3] if lazy_input else None, default_chunk, halo),
    )
    array = array.rechunk(chunks)

    names = engine.output_band_names(options["output"])
    dtype = np.uint8 if options["output"] == "classes" else np.float32
    # An axis in one chunk needs no halo (and Dask refuses a halo deeper than the array).
    depth = {0: 0, 1: 0, **{axis: (halo if len(array.chunks[axis]) > 1 else 0) for axis in (2, 3)}}
    grown = da.overlap.overlap(array, depth=depth, boundary="none")
    out_chunks = (grown.chunks[0], (len(names),), grown.chunks[2], grown.chunks[3])
    grid = {
        dim: (
            np.asarray(data.coords[dim].values) if dim in data.coords else None,
            np.concatenate([[0], np.cumsum(array.chunks[axis])[:-1]]).astype(int),
            depth[axis],
        )
        for axis, dim in ((2, "y"), (3, "x"))
    }
    masked = grown.map_blocks(
        _mask_block,
        bands=list(model.bands),
        context=block_context,
        grid=grid,
        chunks=out_chunks,
        dtype=dtype,
        meta=np.empty((0, 0, 0, 0), dtype=dtype),
        token=f"cloud-mask-{options['output']}",
    )
    result = da.overlap.trim_internal(masked, depth, boundary="none")
    if not has_t:
        result = result[0]
    coords = {name: coord for name, coord in data.coords.items() if "bands" not in coord.dims}
    if not has_t:
        coords = {name: coord for name, coord in coords.items() if "t" not in coord.dims}
    coords["bands"] = names
    out_dims = [d for d in ("t", "bands", "y", "x") if d in cube.dims]
    out = xr.DataArray(result, dims=out_dims, coords=coords, attrs=dict(cube.attrs), name="cloud_mask")
    return out.transpose(*cube.dims)


def _parameter_of(error: engine.CloudMaskError) -> str:
    """Which process parameter an engine error is about (the engine's messages start with the key)."""
    text = str(error)
    for key, parameter in (
        ("processing_level", "processing_level"),
        ("radiometric_offset", "radiometric_offset"),
        ("buffer_m", "buffer"),
        ("output", "output"),
        ("model", "model"),
    ):
        if text.startswith(key) or f"{key}=" in text:
            return parameter
    return "data" if isinstance(error, engine.InvalidInputError) else "model"


def cloud_mask(data, model=engine.DEFAULT_MODEL, processing_level="L2A", radiometric_offset=0,
               output="classes", buffer=0, *, model_dir=None, chunk_px=None):
    """The openEO process ``cloud_mask`` (spec: ``cloud_mask.json``). ``model_dir`` is set by the back-end, not the user."""
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid("cloud_mask", "data", f"expected a raster data cube, got {type(data).__name__}")
    if not isinstance(buffer, (int, float)) or isinstance(buffer, bool) or not math.isfinite(buffer) or buffer < 0:
        raise ProcessParameterInvalid("cloud_mask", "buffer", f"must be a distance in metres >= 0, got {buffer!r}")
    context = {
        "model": model,
        "model_dir": model_dir,
        "processing_level": processing_level,
        "radiometric_offset": radiometric_offset,
        "output": output,
        "buffer_m": buffer,
    }
    return mask_lazy(data, context, process="cloud_mask", chunk_px=chunk_px)
