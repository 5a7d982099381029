"""Our Dask process on a ``LocalCluster`` of 1 or 2 worker processes, the scene in overlapping chunks.

The timed code is the project's own ``cloud_mask`` process
(``openeo_cloudmask.backend_plugin.cloud_mask.cloud_mask``): it grows every
chunk by a halo of the card's ``recommended_overlap``, runs the engine's
``mask_cube`` on each chunk in a worker (model loaded once per worker by the
engine's cached ``load_model``) and trims the halo. If that module cannot be
imported, :func:`masked_dask_array` (``dask.array.map_overlap`` over the
engine's ``mask_array``) stands in, and the results say which one ran.

Both cluster sizes use the 2 cores: 1 worker x 1 thread with onnxruntime on 2
threads, or 2 workers x 1 thread with onnxruntime on 1 thread each. The input
is persisted on the cluster before timing (on a backend the workers load the
data themselves), so a timed run is: build the graph, mask every chunk, bring
the uint8 mask back to the client. Cluster start-up and the first (model
loading) run are not timed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from openeo_cloudmask.udf import cloud_mask as engine

REPO = Path(__file__).resolve().parent.parent


def mask_block(block: np.ndarray, model_id: str, model_dir, threads: int) -> np.ndarray:
    """One chunk (4, h, w) of DN in B02,B03,B04,B08 order -> (h, w) uint8 codes, in a worker."""
    model = engine.load_model(model_id, model_dir, threads)
    options = engine.parse_context({"model": model_id, "model_dir": model_dir})
    return engine.mask_array(block[None], options, model, pixel_size_m=10.0)[0, 0]


def masked_dask_array(dn, model_id: str, model_dir, threads: int, chunk: int):
    """A lazy (H, W) uint8 mask of a (4, H, W) array (numpy or dask), chunked ``chunk`` x ``chunk``."""
    import dask.array as da

    model = engine.load_model(model_id, model_dir, threads)
    halo = model.overlap
    array = dn if isinstance(dn, da.Array) else da.from_array(dn, chunks=(4, chunk, chunk))
    array = array.rechunk((4, chunk, chunk))
    return da.map_overlap(
        mask_block,
        array,
        depth={0: 0, 1: halo, 2: halo},
        boundary="none",
        trim=True,
        drop_axis=0,
        dtype=np.uint8,
        meta=np.empty((0, 0), dtype=np.uint8),
        model_id=model_id,
        model_dir=model_dir,
        threads=threads,
    )


def ort_threads_per_worker(workers: int, cores: int = 2) -> int:
    return max(1, cores // workers)


@contextlib.contextmanager
def local_cluster(workers: int):
    """A LocalCluster of ``workers`` processes x 1 thread, onnxruntime capped so that all workers share 2 cores.

    Workers inherit the environment at start: ``PYTHONPATH`` gets the
    repository (for the fallback's ``benchmarks`` functions) and
    ``OPENEO_CLOUDMASK_ORT_THREADS`` the per-worker onnxruntime thread count.
    """
    from dask.distributed import Client, LocalCluster

    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", engine.THREADS_ENV)}
    path = saved["PYTHONPATH"] or ""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    os.environ[engine.THREADS_ENV] = str(ort_threads_per_worker(workers))
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: several clusters may run on a shared machine
            memory_limit=0,
            silence_logs=40,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _process_function():
    try:
        from openeo_cloudmask.backend_plugin.cloud_mask import cloud_mask
    except ImportError:
        return None
    return cloud_mask


def dask_runner(client, dn: np.ndarray, model_id: str, model_dir, workers: int, chunk: int):
    """Persist the scene on the cluster and return a no-argument callable that masks it once (what gets timed)."""
    import dask.array as da

    from benchmarks.masking_methods import dn_cube

    threads = ort_threads_per_worker(workers)
    model_dir = None if model_dir is None else str(model_dir)
    process = _process_function()
    setup = {"workers": workers, "threads_per_worker": 1, "onnxruntime_threads_per_worker": threads, "chunk": chunk}
    if process is not None:
        with warnings.catch_warnings():  # "large object in graph": it is sent once, by this persist
            warnings.simplefilter("ignore", UserWarning)
            cube = client.persist(dn_cube(dn).chunk({"bands": -1, "y": chunk, "x": chunk}))

        def run():
            return process(cube, model=model_id, model_dir=model_dir).values

        return run, {**setup, "implementation": "backend_plugin.cloud_mask.cloud_mask (the project's Dask process)"}

    source = client.persist(da.from_array(dn, chunks=(4, chunk, chunk)))

    def run_fallback():
        return masked_dask_array(source, model_id, model_dir, threads, chunk).compute()

    return run_fallback, {**setup, "implementation": "fallback: dask.array.map_overlap over mask_array "
                                                     "(backend_plugin not importable)"}
