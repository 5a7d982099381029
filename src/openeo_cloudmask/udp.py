"""Where the UDF file is, for clients and tests; the UDP itself is built by :mod:`openeo_cloudmask.release`.

The process body (``apply_neighborhood(run_udf)``, its context keys and chunking) is
the ``cloud_mask`` process's own (:mod:`openeo_cloudmask.backend_plugin.cloud_mask`);
the release package builds the UDP from it. Processes never import either module here.
"""

from __future__ import annotations

from pathlib import Path


def udf_path() -> str:
    """Path of the UDF file (``udf/cloud_mask.py``), e.g. for ``openeo.UDF.from_file``."""
    import importlib.util

    return importlib.util.find_spec("openeo_cloudmask.udf.cloud_mask").origin


def udf_source() -> str:
    """The UDF file exactly as a backend will run it (without an embedded model)."""
    return Path(udf_path()).read_text()

