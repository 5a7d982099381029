"""Release code: everything that publishes the mask, kept apart from the process path.

The engine (``udf/cloud_mask.py``) and the registered processes
(``backend_plugin/``) never import this package; it imports them. Modules:

- :mod:`~openeo_cloudmask.release.settings`: the one hosting setting
  (``RELEASE_URL``) and the names and URLs derived from it;
- :mod:`~openeo_cloudmask.release.udp_build`: the ``cloud_mask`` UDP, self-contained
  (model and card embedded in the UDF code) or pointing at a dependency archive;
  ``make udp`` writes ``process_graphs/cloud_mask.json`` with it;
- :mod:`~openeo_cloudmask.release.archive`: the ``udf-dependency-archives`` zip;
- :mod:`~openeo_cloudmask.release.memory_probe`: the UDF's peak memory per chunk,
  measured in a fresh interpreter, which sizes ``python-memory``;
- :mod:`~openeo_cloudmask.release.publish`: ``openeo-cloudmask publish``, storing the
  UDP in a user's account on any openEO backend;
- :mod:`~openeo_cloudmask.release.apex`: the ESA APEx catalogue entry.
"""

__all__ = ["settings", "udp_build", "archive", "memory_probe", "publish", "apex"]
