"""The proposed standard process ``cloud_detection``: bands ``cloud`` and ``shadow``, probabilities 0..1.

It is ``cloud_mask`` with ``output="cloud_detection"``: the same engine, the
same lazy chunk-wise evaluation (:func:`.cloud_mask.mask_lazy`). ``method``
picks the model (``null``: the back-end's default); ``options`` carries
``processing_level``, ``radiometric_offset`` and ``buffer`` (metres).
"""

import json
from pathlib import Path

import xarray as xr

from openeo_cloudmask.udf import cloud_mask as engine

from .cloud_mask import mask_lazy
from .errors import ProcessParameterInvalid

SPEC_PATH = Path(__file__).with_name("cloud_detection.json")
OPTION_KEYS = {"processing_level": "processing_level", "radiometric_offset": "radiometric_offset", "buffer": "buffer_m"}


def load_spec(path: Path = SPEC_PATH) -> dict:
    return json.loads(Path(path).read_text())


def cloud_detection(data, method=None, options=None, *, model_dir=None, chunk_px=None):
    """The openEO process ``cloud_detection`` (spec: ``cloud_detection.json``)."""
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid("cloud_detection", "data", f"expected a raster data cube, got {type(data).__name__}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ProcessParameterInvalid(
            "cloud_detection", "options", f"unknown option(s) {unknown}; valid options are {sorted(OPTION_KEYS)}"
        )
    context = {OPTION_KEYS[key]: value for key, value in options.items()}
    context.update(model=method or engine.DEFAULT_MODEL, model_dir=model_dir, output="cloud_detection")
    return mask_lazy(data, context, process="cloud_detection", chunk_px=chunk_px)
