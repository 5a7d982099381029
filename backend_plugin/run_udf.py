"""The openEO process ``run_udf`` for Python UDFs on Dask-backed cubes (spec: openeo-processes' ``run_udf``).

The UDF runs exactly as an openEO backend runs it: ``openeo.udf.run_udf_code``
with a ``UdfData`` holding one ``XarrayDataCube`` and the ``context`` as user
context, once per Dask chunk. Inside :func:`.apply_neighborhood.apply_neighborhood`
the chunks are the neighborhoods (size + 2 x overlap); on a cube that is not
Dask-backed the UDF runs once on the whole cube.

The result stays lazy, so its band labels must be known before running: they
come from the UDF's ``apply_metadata(metadata, context)`` when it defines one
(as backends do), else the input's labels are kept. Its dtype is not known
before running: the lazy array declares the input's dtype, the computed one
has the UDF's (e.g. uint8 classes).

For the cloud-mask UDF (``udf/cloud_mask.py``) the context, band set,
dimensions and dtype are checked from metadata before anything runs, as are
the neighborhood size against the model's ``min_tile_size``.
"""

import json
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from .apply_neighborhood import NEIGHBORHOOD_ATTR
from .errors import ProcessParameterInvalid

_log = logging.getLogger(__name__)
PROCESS = "run_udf"


def load_spec() -> dict:
    from openeo_processes_dask import specs

    return specs.run_udf


def _udf_code(udf) -> str:
    if not isinstance(udf, str) or not udf.strip():
        raise ProcessParameterInvalid(PROCESS, "udf", "expected the UDF's Python source code as a string")
    if udf.startswith(("http://", "https://")):
        raise ProcessParameterInvalid(PROCESS, "udf", "UDFs given by URL are not supported here: pass the source code")
    if "\n" not in udf and udf.endswith(".py") and Path(udf).is_file():
        return Path(udf).read_text()
    return udf


def _load_udf(code: str) -> dict:
    from openeo.udf.run_code import load_module_from_string

    try:
        return load_module_from_string(code)  # lru_cached by openeo: one module per code per process
    except Exception as exc:  # SyntaxError, ImportError, anything the module body raises
        raise ProcessParameterInvalid(PROCESS, "udf", f"the UDF cannot be loaded: {exc!r}") from None


def _output_bands(namespace: dict, data: xr.DataArray, context):
    """Band labels of the UDF's output, from its ``apply_metadata`` (or the input's labels)."""
    if "bands" not in data.coords:
        return None
    labels = [str(b) for b in data.coords["bands"].values]
    apply_metadata = namespace.get("apply_metadata")
    if not callable(apply_metadata):
        return labels
    from openeo.metadata import Band, BandDimension, CubeMetadata

    metadata = CubeMetadata(dimensions=[BandDimension(name="bands", bands=[Band(name) for name in labels])])
    try:
        return list(apply_metadata(metadata, context).band_names)
    except ProcessParameterInvalid:
        raise
    except Exception as exc:
        code = getattr(exc, "code", None)
        raise ProcessParameterInvalid(PROCESS, "context", f"the UDF's apply_metadata rejected it: {exc}", engine_code=code) from None


def _is_cloud_mask_udf(namespace: dict) -> bool:
    """The cloud-mask UDF with its ``Options`` contract (a UDF from an older release runs without the preflight)."""
    return all(name in namespace for name in ("Options", "parse_context", "check_tiling", "check_cube", "describe_model",
                                              "pixel_size_from_coords", "CloudMaskError"))


def _preflight_cloud_mask(namespace: dict, data: xr.DataArray, context, neighborhood) -> None:
    """Metadata checks of the cloud-mask UDF, before any compute: context, model card, bands, dims, dtype, size."""
    error_type = namespace["CloudMaskError"]
    try:
        options = namespace["parse_context"](context)
        model = namespace["describe_model"](options.model, options.model_dir)
        namespace["check_tiling"](options, model)
        namespace["check_cube"](data, options, model)
    except error_type as exc:
        parameter = "data" if exc.key == "data" else "context"  # the engine's context keys live in 'context'
        raise ProcessParameterInvalid(PROCESS, parameter, str(exc), engine_code=getattr(exc, "code", None)) from None
    if neighborhood:
        halo = options.halo(model, namespace["pixel_size_from_coords"](data))
        for dim in ("x", "y"):
            size = neighborhood["size"].get(dim)
            overlap = neighborhood["overlap"].get(dim, 0)
            if size is not None and size < model.min_tile_size:
                raise ProcessParameterInvalid(
                    "apply_neighborhood", "size",
                    f"{dim}: {size} px is smaller than model {options.model!r}'s minimum tile of {model.min_tile_size} px",
                )
            if overlap < halo:
                _log.warning(
                    "apply_neighborhood overlap %s px along %s is less than the %s px that model %r needs (its "
                    "recommended overlap plus the buffer): expect seams at neighborhood borders",
                    overlap, dim, halo, options.model,
                )


def _run_on_cube(code: str, cube: xr.DataArray, context) -> xr.DataArray:
    from openeo.udf import UdfData, XarrayDataCube
    from openeo.udf.run_code import run_udf_code

    result = run_udf_code(code, UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context))
    cubes = result.get_datacube_list()
    if not cubes or len(cubes) != 1:
        raise ProcessParameterInvalid(PROCESS, "udf", f"the UDF must return exactly one data cube, got {len(cubes or [])}")
    out = cubes[0].get_array()
    if set(out.dims) != set(cube.dims):
        raise ProcessParameterInvalid(PROCESS, "udf", f"the UDF changed the dimensions {list(cube.dims)} into {list(out.dims)}")
    return out.transpose(*cube.dims)


def _udf_block(block: np.ndarray, block_info=None, *, code, context, dims, coords, attrs, out_bands):
    """Run the UDF on one Dask chunk (a worker-side task); coordinates are sliced from the grown vectors."""
    location = block_info[0]["array-location"]
    block_coords = {}
    for name, (dim, values) in coords.items():
        if dim is None:
            block_coords[name] = values
        else:
            start, stop = location[dims.index(dim)]
            block_coords[name] = (dim, values[start:stop])
    cube = xr.DataArray(block, dims=dims, coords=block_coords, attrs=attrs)
    out = _run_on_cube(code, cube, context)
    for dim in dims:
        if dim != "bands" and out.sizes[dim] != cube.sizes[dim]:
            raise ValueError(f"the UDF changed the size of {dim!r} from {cube.sizes[dim]} to {out.sizes[dim]}")
    if out_bands is not None and out.sizes.get("bands") != len(out_bands):
        raise ValueError(f"the UDF returned {out.sizes.get('bands')} bands, apply_metadata announced {out_bands}")
    return np.asarray(out.values)


def run_udf(data, udf, runtime, version=None, context=None):
    """The openEO process ``run_udf`` on a raster data cube."""
    import dask.array as da

    if not isinstance(runtime, str) or runtime.lower() != "python":
        raise ProcessParameterInvalid(PROCESS, "runtime", f"only the 'Python' runtime is available, got {runtime!r}")
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid(PROCESS, "data", f"expected a raster data cube, got {type(data).__name__}")
    code = _udf_code(udf)
    namespace = _load_udf(code)
    attrs = {k: v for k, v in data.attrs.items() if k != NEIGHBORHOOD_ATTR}
    if _is_cloud_mask_udf(namespace):
        _preflight_cloud_mask(namespace, data, context, data.attrs.get(NEIGHBORHOOD_ATTR))
    out_bands = _output_bands(namespace, data, context)
    dims = list(data.dims)

    if not isinstance(data.data, da.Array):
        plain = data.copy()
        plain.attrs = attrs
        return _run_on_cube(code, plain, context)

    coords = {}
    for name, coord in data.coords.items():
        if coord.dims == ():
            coords[name] = (None, coord.values)
        elif len(coord.dims) == 1 and coord.dims[0] != "bands":
            coords[name] = (coord.dims[0], np.asarray(coord.values))
    if "bands" in data.coords:
        coords["bands"] = ("bands", np.asarray(data.coords["bands"].values))
    chunks = list(data.data.chunks)
    if out_bands is not None:
        chunks[dims.index("bands")] = (len(out_bands),)
        if data.data.numblocks[dims.index("bands")] != 1:
            raise ProcessParameterInvalid(PROCESS, "data", "the bands dimension must be in one chunk for a UDF")
    result = data.data.map_blocks(
        _udf_block,
        code=code,
        context=context,
        dims=dims,
        coords=coords,
        attrs=attrs,
        out_bands=out_bands,
        chunks=tuple(chunks),
        dtype=data.dtype,
        meta=np.empty((0,) * len(dims), dtype=data.dtype),
        token="run-udf",
    )
    out_coords = {name: coord for name, coord in data.coords.items() if "bands" not in coord.dims}
    if out_bands is not None:
        out_coords["bands"] = out_bands
    return xr.DataArray(result, dims=dims, coords=out_coords, attrs=dict(data.attrs), name=data.name)
