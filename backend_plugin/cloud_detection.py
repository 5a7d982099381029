"""The proposed standard process ``cloud_detection``: bands ``cloud`` and ``shadow``, probabilities 0..1.

It is ``cloud_mask`` with ``output="cloud_detection"``: the same engine, the
same lazy chunk-wise evaluation (:func:`.cloud_mask.mask_lazy`). ``method``
picks the model (``null``: the engine's default); ``options`` carries
``processing_level``, ``radiometric_offset`` and ``buffer`` (metres), named as
in ``cloud_mask``.
"""

import json
from pathlib import Path

import xarray as xr

from .cloud_mask import CONTEXT_KEYS, mask_lazy
from .errors import ProcessParameterInvalid

SPEC_PATH = Path(__file__).with_name("cloud_detection.json")
PROCESS = "cloud_detection"
OPTION_NAMES = ("processing_level", "radiometric_offset", "buffer")
#: An engine error's key -> the parameter to change here: the model is ``method``, the rest are ``options``.
PARAMETER_OF_KEY = {"model": "method", **{CONTEXT_KEYS[name]: "options" for name in OPTION_NAMES}}


def load_spec(path: Path = SPEC_PATH) -> dict:
    return json.loads(Path(path).read_text())


def cloud_detection(data, method=None, options=None, *, model_dir=None, chunk_px=None):
    """The openEO process ``cloud_detection`` (spec: ``cloud_detection.json``)."""
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid(PROCESS, "data", f"expected a raster data cube, got {type(data).__name__}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ProcessParameterInvalid(
            PROCESS, "options", f"unknown option(s) {unknown}; valid options are {sorted(OPTION_NAMES)}"
        )
    context = {CONTEXT_KEYS[name]: value for name, value in options.items()}
    context.update(model=method, model_dir=model_dir, output="cloud_detection")
    return mask_lazy(data, context, process=PROCESS, chunk_px=chunk_px, parameter_of_key=PARAMETER_OF_KEY)
