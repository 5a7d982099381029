"""The openEO process ``apply_neighborhood`` over Dask, for children such as ``run_udf``.

openeo-processes-dask has no ``apply_neighborhood``. This one cuts the cube
into neighborhoods of ``size`` pixels (dimensions not listed: all values),
grows each by ``overlap`` pixels on both sides (no padding at the cube's
border, as backends do), hands the grown cube to ``process`` and trims the
overlap off its answer. The cutting is :mod:`openeo_cloudmask.tiling`'s: a
last sliver thinner than the overlap joins the neighborhood before it, and a
cube smaller than one neighborhood is one neighborhood without overlap. A
dimension listed with the value ``null`` that the cube lacks (``t`` in a
cube without dates) is ignored: "all values" of nothing.

The trap it avoids: openeo-pg-parser-networkx compiles a child process graph
into a callable that memoises every node's result in a results cache shared
by the whole graph, keyed by node only. Calling that callable once per chunk
returns the *first* chunk's result for every chunk (the same pitfall
titiler-openeo fixed in its ``apply``/``array_apply``). So ``process`` is called
exactly once, on a lazy cube whose Dask chunks *are* the neighborhoods;
:func:`.run_udf.run_udf` then runs the UDF once per chunk inside Dask. Children
that work pixel by pixel (arithmetic, ``apply``) work on that cube unchanged.
"""

import json
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask import tiling

from .errors import ProcessParameterInvalid

SPEC_PATH = Path(__file__).with_name("apply_neighborhood.json")
#: attrs key carrying {"size": {dim: px|None}, "overlap": {dim: px}} from apply_neighborhood to run_udf.
NEIGHBORHOOD_ATTR = "openeo_cloudmask_neighborhood"
PROCESS = "apply_neighborhood"


def load_spec(path: Path = SPEC_PATH) -> dict:
    return json.loads(Path(path).read_text())


def _grid_spacing(data: xr.DataArray, dim: str):
    if dim in data.coords and data.sizes[dim] > 1:
        values = np.asarray(data.coords[dim].values)
        if np.issubdtype(values.dtype, np.number):
            return float(abs(values[1] - values[0]))
    return None


def parse_chunk_sizes(parameter: str, items, data: xr.DataArray) -> dict:
    """``[{dimension, value, unit}]`` -> ``{dim: pixels or None}``, with openEO errors for bad entries."""
    if items is None:
        return {}
    if not isinstance(items, (list, tuple)):
        raise ProcessParameterInvalid(PROCESS, parameter, f"expected a list of {{dimension, value, unit}}, got {items!r}")
    parsed = {}
    for item in items:
        if not isinstance(item, dict) or "dimension" not in item or "value" not in item:
            raise ProcessParameterInvalid(PROCESS, parameter, f"each entry needs 'dimension' and 'value', got {item!r}")
        dim, value, unit = item["dimension"], item["value"], item.get("unit") or "px"
        if dim not in data.dims and value is None:
            continue  # all values of a dimension the cube lacks: nothing to cut
        if dim not in data.dims:
            raise ProcessParameterInvalid(PROCESS, parameter, f"dimension {dim!r} is not in the cube {list(data.dims)}")
        if value is None:
            parsed[dim] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProcessParameterInvalid(
                PROCESS, parameter, f"{dim}: only a number of pixels/metres or null is supported, got {value!r}"
            )
        if value < 0 or (parameter == "size" and value == 0):
            raise ProcessParameterInvalid(PROCESS, parameter, f"{dim}: must be {'> 0' if parameter == 'size' else '>= 0'}, got {value}")
        if unit == "m":
            spacing = _grid_spacing(data, dim) if dim in ("x", "y") else None
            if not spacing:
                raise ProcessParameterInvalid(PROCESS, parameter, f"{dim}: unit 'm' needs metric {dim} coordinates; use unit 'px'")
            value = value / spacing
        elif unit != "px":
            raise ProcessParameterInvalid(PROCESS, parameter, f"{dim}: unit must be 'px' or 'm', got {unit!r}")
        if abs(value - round(value)) > 1e-6:
            raise ProcessParameterInvalid(PROCESS, parameter, f"{dim}: {value} is not a whole number of pixels")
        parsed[dim] = int(round(value))
    return parsed


def _grown_vector(values: np.ndarray, chunks: tuple, depth: int) -> np.ndarray:
    """A coordinate vector for the overlapped array: each chunk's labels plus ``depth`` labels each side."""
    if depth == 0:
        return values
    return np.concatenate([values[start:stop] for start, stop in tiling.grown_bounds(chunks, depth)])


def apply_neighborhood(data, process, size, overlap=None, context=None):
    """The openEO process ``apply_neighborhood`` (spec: ``apply_neighborhood.json``)."""
    import dask.array as da

    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid(PROCESS, "data", f"expected a raster data cube, got {type(data).__name__}")
    if not callable(process):
        raise ProcessParameterInvalid(PROCESS, "process", "expected a child process graph")
    sizes = parse_chunk_sizes("size", size, data)
    overlaps = {dim: px for dim, px in parse_chunk_sizes("overlap", overlap, data).items() if px}
    for dim in overlaps:
        if dim not in ("x", "y"):
            raise ProcessParameterInvalid(PROCESS, "overlap", f"overlap is only supported along x and y, not {dim!r}")

    array = data.data if isinstance(data.data, da.Array) else da.from_array(np.asarray(data.data), chunks=-1)
    chunks = tuple(tiling.axis_chunks(data.sizes[dim], sizes.get(dim), overlaps.get(dim, 0)) for dim in data.dims)
    array = array.rechunk(chunks)
    grown, depth = tiling.overlap(array, {axis: overlaps.get(dim, 0) for axis, dim in enumerate(data.dims)})

    coords = {}
    for name, coord in data.coords.items():
        if coord.dims == ():
            coords[name] = coord
        elif len(coord.dims) == 1 and coord.dims[0] in data.dims:
            dim = coord.dims[0]
            axis = data.dims.index(dim)
            coords[name] = (dim, _grown_vector(np.asarray(coord.values), chunks[axis], depth[axis]))
    attrs = dict(data.attrs)
    attrs[NEIGHBORHOOD_ATTR] = {"size": {d: sizes.get(d) for d in data.dims}, "overlap": {d: overlaps.get(d, 0) for d in data.dims}}
    neighborhoods = xr.DataArray(grown, dims=data.dims, coords=coords, attrs=attrs, name=data.name)

    # Exactly one call: see the module docstring for why not one call per chunk.
    result = process(named_parameters={"data": neighborhoods, "context": context})

    if not isinstance(result, xr.DataArray) or set(result.dims) != set(data.dims):
        raise ProcessParameterInvalid(
            PROCESS, "process",
            f"the child process must return a data cube with the dimensions {list(data.dims)}, "
            f"got {getattr(result, 'dims', type(result).__name__)}",
        )
    result = result.transpose(*data.dims)
    out = result.data
    if not isinstance(out, da.Array):
        out_chunks = tuple((result.sizes[d],) if d == "bands" and result.sizes[d] != data.sizes[d] else grown.chunks[i]
                           for i, d in enumerate(data.dims))
        out = da.from_array(np.asarray(out), chunks=out_chunks)
    for axis, dim in enumerate(data.dims):
        if dim != "bands" and out.chunks[axis] != grown.chunks[axis]:
            raise ProcessParameterInvalid(
                PROCESS, "process", f"the child process changed the {dim!r} extent of a neighborhood; it must keep it"
            )
    trimmed = tiling.trim(out, depth)

    out_coords = {name: coord for name, coord in data.coords.items() if "bands" not in coord.dims}
    if "bands" in result.coords:
        out_coords["bands"] = result.coords["bands"].values
    return xr.DataArray(trimmed, dims=data.dims, coords=out_coords, attrs=dict(data.attrs), name=result.name)
