"""The openEO process ``mask``, lazy (spec: openeo-processes' ``mask``, from openeo-processes-dask).

openeo-processes-dask's own ``mask`` computes the whole mask eagerly
(``_not`` -> ``notnull`` -> ``xarray.isnull`` -> ``np.asarray`` on the
DataArray): in a graph ``cloud_mask -> mask -> median`` it runs the cloud
model in the client while the graph is being built, and ships the computed
mask to the cluster inside the graph. This one stays a Dask graph.
"""

import numpy as np
import xarray as xr

from .errors import ProcessParameterInvalid

PROCESS = "mask"


def load_spec() -> dict:
    from openeo_processes_dask import specs

    return specs.mask


def mask(data, mask, replacement=None):
    """Replace ``data`` where ``mask`` is true or non-zero (null: keep). Dimensions are matched by name."""
    if not isinstance(data, xr.DataArray) or not isinstance(mask, xr.DataArray):
        raise ProcessParameterInvalid(PROCESS, "mask", "data and mask must both be raster data cubes")
    missing = sorted(set(mask.dims) - set(data.dims))
    if missing:
        raise ProcessParameterInvalid(PROCESS, "mask", f"the mask has dimensions {missing} that data {list(data.dims)} lacks")
    replace = mask.fillna(0).astype(bool)
    return data.where(~replace, np.nan if replacement is None else replacement).transpose(*data.dims)
