"""Our Dask process on a ``LocalCluster`` of 1 or 2 worker processes, the scene in overlapping chunks.

The timed code is the project's own ``cloud_mask`` process
(``openeo_cloudmask.backend_plugin.cloud_mask.cloud_mask``): it grows every
chunk by a halo of the card's ``recommended_overlap``, runs the engine's
``mask_cube`` on each chunk in a worker (model loaded once per worker by the
engine's cached ``load_model``) and trims the halo.

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


def ort_threads_per_worker(workers: int, cores: int = 2) -> int:
    return max(1, cores // workers)


@contextlib.contextmanager
def local_cluster(workers: int):
    """A LocalCluster of ``workers`` processes x 1 thread, onnxruntime capped so that all workers share 2 cores.

    Workers inherit the environment at start: ``PYTHONPATH`` gets the
    repository and ``OPENEO_CLOUDMASK_ORT_THREADS`` the per-worker
    onnxruntime thread count.
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


def dask_runner(client, dn: np.ndarray, model_id: str, model_dir, workers: int, chunk: int):
    """Persist the scene on the cluster and return a no-argument callable that masks it once (what gets timed)."""
    from benchmarks.masking_methods import dn_cube
    from openeo_cloudmask.backend_plugin.cloud_mask import cloud_mask

    threads = ort_threads_per_worker(workers)
    model_dir = None if model_dir is None else str(model_dir)
    setup = {"workers": workers, "threads_per_worker": 1, "onnxruntime_threads_per_worker": threads, "chunk": chunk,
             "implementation": "backend_plugin.cloud_mask.cloud_mask (the project's Dask process)"}
    with warnings.catch_warnings():  # "large object in graph": it is sent once, by this persist
        warnings.simplefilter("ignore", UserWarning)
        cube = client.persist(dn_cube(dn).chunk({"bands": -1, "y": chunk, "x": chunk}))

    def run():
        return cloud_mask(cube, model=model_id, model_dir=model_dir).values

    return run, setup


def _worker_rss_kib() -> int:
    from benchmarks.memory_probe import _status_kib

    return _status_kib("VmRSS")


def _worker_peak_kib() -> int:
    from benchmarks.memory_probe import _status_kib

    return _status_kib("VmHWM")


def _worker_reset_peak() -> bool:
    from benchmarks.memory_probe import _reset_peak

    return _reset_peak()


def worker_memory(dn: np.ndarray, model_id: str, model_dir, chunk: int) -> dict:
    """Peak memory of the worker of a fresh 1-worker cluster that masks the scene ``dn`` in ``chunk`` px chunks.

    The idle worker's RSS is read and its peak-RSS counter reset
    (``/proc/self/clear_refs``); then the scene is persisted on it and
    masked twice (the first run loads the model). Working memory = peak RSS
    minus the idle RSS minus the persisted scene (which a backend would not
    hold whole): the model, onnxruntime's buffers and the chunks in flight.
    """
    with local_cluster(1) as client:
        (idle,) = client.run(_worker_rss_kib).values()
        (reset,) = client.run(_worker_reset_peak).values()
        run, _ = dask_runner(client, dn, model_id, model_dir, 1, chunk)
        run()
        run()
        (peak,) = client.run(_worker_peak_kib).values()
    scene_mib = dn.nbytes / 2**20
    return {"scene": int(dn.shape[1]), "chunk": chunk, "peak_counter_reset": bool(reset), "idle_mib": idle / 1024,
            "peak_mib": peak / 1024, "scene_mib": scene_mib, "working_mib": (peak - idle) / 1024 - scene_mib}
