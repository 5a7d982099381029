"""openEO processes backed by the cloud-mask engine: ``cloud_mask``, ``cloud_detection``, the
``apply_neighborhood`` + ``run_udf`` pair that openeo-processes-dask lacks, and a lazy ``mask``.
One module per process id, its JSON spec beside it (or openeo-processes-dask's standard one).

Nothing is registered on import. Use :mod:`.registry` (``register``, ``build_registry``,
``install_into_local_connection``, ``run_process_graph``) for openeo-pg-parser-networkx /
openeo-processes-dask / ``LocalConnection``, or :mod:`.openeo_driver_plugin` (``register``)
for openeo-python-driver backends.
"""
