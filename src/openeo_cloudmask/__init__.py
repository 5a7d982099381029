"""openeo-cloudmask: Sentinel-2 cloud and cloud-shadow masking that runs inside openEO.

The engine lives in :mod:`openeo_cloudmask.udf.cloud_mask` (the file an openEO
backend runs as a UDF). Everything else -- the registered process, the CLI,
the examples -- calls it.
"""

from openeo_cloudmask._version import __version__

__all__ = ["__version__"]
