"""The same graphs on a dask.distributed LocalCluster (2 worker processes x 1 thread).

Results must equal a local run bit for bit; each worker process must create
the ONNX session once, not once per chunk; and killing a worker mid-run must
lose nothing (Dask reschedules its tasks on the survivor).
"""

import json
import logging
import os
import signal
import time
from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

from test_backend_plugin import UDF_CODE, demo_cube, neighborhood_graph
from tiny_model import TINY_MODEL_ID

from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# as in tests/conftest.py (not imported: tests/driver has a conftest module of its own)
SHARED_DATA = Path(os.environ.get("OPENEO_CLOUDMASK_SHARED_DATA", REPO.parent / "shared" / "data"))
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared Sentinel-2 data not found at {SHARED_DATA}")
COMPOSITE = json.loads((REPO / "process_graphs" / "cloud_free_composite.json").read_text())


def start_cluster():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    cluster, client = start_cluster()
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def registry(tiny_model_dir):
    return build_registry(model_dir=str(tiny_model_dir), chunk_px=64)


def session_loads(client) -> dict:
    """InferenceSessions created so far in each worker process (the engine's counter)."""
    return client.run(lambda: __import__("openeo_cloudmask.udf.cloud_mask", fromlist=["_"]).SESSION_LOADS["count"])


def udf_session_loads(client) -> dict:
    """The same counter in the UDF module that run_udf loads from source (its own module instance)."""
    code = UDF_CODE
    return client.run(lambda: __import__("openeo.udf.run_code", fromlist=["_"]).load_module_from_string(code)["SESSION_LOADS"]["count"])


def cubes():
    yield "demo", demo_cube(dates=3, size=256).chunk(x=64, y=64)
    if SHARED_DATA.is_dir():
        yield "wright", xr.open_dataset(SHARED_DATA / "s2cloudmask_wright_stack30.nc").reflectance.load().chunk(x=50, y=50)


@pytest.mark.parametrize("name,cube", list(cubes()))
def test_composite_on_the_cluster_equals_local_and_loads_the_model_once_per_worker(client, registry, name, cube):
    result = run_process_graph(COMPOSITE, registry, {"data": cube, "model": TINY_MODEL_ID})
    local = result.compute(scheduler="synchronous")
    mask_only = {"process_graph": {"m": {"process_id": "cloud_mask", "arguments": {"data": {"from_parameter": "data"}, "model": TINY_MODEL_ID}, "result": True}}}
    chunks = run_process_graph(mask_only, registry, {"data": cube}).data.npartitions
    remote = client.compute(result).result()
    np.testing.assert_array_equal(remote.values, local.values)
    loads = session_loads(client)
    assert len(loads) == 2 and all(count <= 1 for count in loads.values()), loads
    assert sum(loads.values()) >= 1 and chunks > 2 * sum(loads.values())


def test_apply_neighborhood_udf_on_the_cluster(client, registry, tiny_context):
    cube = demo_cube(dates=2, size=256)
    result = run_process_graph(neighborhood_graph(UDF_CODE, 64, 8, tiny_context), registry, {"data": cube})
    local = result.compute(scheduler="synchronous")
    remote = client.compute(result).result()
    np.testing.assert_array_equal(remote.values, local.values)
    assert result.data.npartitions == 16
    loads = udf_session_loads(client)
    assert all(count <= 1 for count in loads.values()), loads


def test_a_killed_worker_loses_no_result(registry):
    cube = demo_cube(dates=3, size=256).chunk(x=64, y=64)
    result = run_process_graph(COMPOSITE, registry, {"data": cube, "model": TINY_MODEL_ID})
    expected = result.compute(scheduler="synchronous")

    def slowly(block):  # nested, so cloudpickle ships it by value to the workers
        time.sleep(0.4)
        return block

    slow = result.copy(data=result.data.map_blocks(slowly, dtype=result.dtype))
    got = compute_killing_a_worker(slow, timeout=180)
    np.testing.assert_array_equal(got.values, expected.values)
    assert np.isfinite(got.values).any()


def compute_killing_a_worker(result, timeout: float):
    """Compute ``result`` on a fresh cluster and SIGKILL one worker (by its PID) once 3 tasks have finished."""
    cluster, client = start_cluster()
    try:
        future = client.compute(result)
        deadline = time.time() + timeout
        while client.run_on_scheduler(_tasks_in_memory) < 3:
            assert time.time() < deadline, f"no task finished within {timeout} s"
            time.sleep(0.05)
        pids = client.run(os.getpid)
        assert not future.done(), "the run finished before a worker could be killed; make it slower"
        os.kill(pids[sorted(pids)[0]], signal.SIGKILL)
        started = time.perf_counter()
        got = future.result(timeout=timeout)
        print(f"\nwith a worker killed by PID: {time.perf_counter() - started:.1f} s after the kill")
        return got
    finally:
        client.close()
        cluster.close()


def _tasks_in_memory(dask_scheduler=None) -> int:
    return sum(task.state == "memory" for task in dask_scheduler.tasks.values())


def test_example_dask_cluster(tiny_model_dir):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "dask_cluster.py"), "--model", TINY_MODEL_ID, "--model-dir", str(tiny_model_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cluster == local: True" in out.stdout
    sessions = out.stdout.split("ONNX sessions per worker:")[1]
    assert "1" in sessions and all(c in "{}': ,0123456789" for c in sessions.strip()), sessions


# --------------------------------------------------------------------------- issue 20: the composite stays lazy


def lazy_composite(folder: Path, dates: int, size: int):
    """The composite built with the openeo client on ``LocalConnection`` after ``install_into_local_connection()``.

    ``load_collection -> cloud_mask -> mask(not clear) -> median over t`` on a NetCDF collection of
    ``dates`` x ``size``^2 px (real model). Returns ``(execute() seconds, engine calls in this process, result)``.
    """
    from openeo.local import LocalConnection
    from test_tiling import scene

    from openeo_cloudmask.backend_plugin.registry import install_into_local_connection
    from openeo_cloudmask.udf import cloud_mask as engine

    path = folder / f"s2_{dates}x{size}.nc"
    if not path.exists():
        scene(size, size, dates=dates, seed=7).to_dataset(dim="bands").drop_attrs().to_netcdf(path)
    install_into_local_connection()
    s2 = LocalConnection(str(folder)).load_collection(str(path))
    classes = s2.process("cloud_mask", data=s2, output="classes")
    not_clear = classes.reduce_dimension(dimension="bands", reducer=lambda data: data.array_element(index=0) != 1)
    composite = s2.mask(not_clear).reduce_dimension(dimension="t", reducer="median")
    calls = engine.MASK_CALLS["count"] + engine.SESSION_LOADS["count"]
    started = time.perf_counter()
    result = composite.execute()
    seconds = time.perf_counter() - started
    return seconds, engine.MASK_CALLS["count"] + engine.SESSION_LOADS["count"] - calls, result


def _engine_counts(dask_worker=None) -> dict:
    from openeo_cloudmask.udf import cloud_mask as engine

    return {"sessions": engine.SESSION_LOADS["count"], "chunks": engine.MASK_CALLS["count"]}


def _session_threads() -> int:
    """Inside a task: the intra-op threads of this worker's session for the default model."""
    from openeo_cloudmask.udf import cloud_mask as engine

    return engine.load_model().session.get_session_options().intra_op_num_threads


@pytest.mark.parametrize("dates,size", [(int(os.environ.get("OPENEO_CLOUDMASK_COMPOSITE_DATES", 6)),
                                         int(os.environ.get("OPENEO_CLOUDMASK_COMPOSITE_PX", 1024)))])
def test_local_connection_composite_stays_lazy_and_runs_on_the_workers(tmp_path_factory, dates, size):
    """issue 20's target, on a smaller cube by default (OPENEO_CLOUDMASK_COMPOSITE_DATES=30 _PX=2048 for the full one).

    The client makes no engine call and gets a Dask array back (execute() time is printed); every worker that masked a
    chunk holds exactly one ONNX session with one thread (its share of the cores); the cluster's result
    equals the synchronous run, and still does when a worker is killed by its PID mid-run.
    """
    seconds, client_calls, result = lazy_composite(tmp_path_factory.mktemp("collection"), dates, size)
    assert client_calls == 0
    # lazy by structure, not by a stopwatch (a loaded CI host makes any time limit flaky): a Dask array, no engine call
    assert isinstance(result.data, dask.array.Array), type(result.data)
    expected = result.compute(scheduler="synchronous")

    cluster, client = start_cluster()
    try:
        before = client.run(_engine_counts)
        started = time.perf_counter()
        got = client.compute(result).result()
        cluster_seconds = time.perf_counter() - started
        counts = {worker: {key: value - before[worker][key] for key, value in now.items()}
                  for worker, now in client.run(_engine_counts).items()}
        threads = client.submit(_session_threads, pure=False).result()
    finally:
        client.close()
        cluster.close()
    print(f"\ncomposite {dates} x {size}^2: execute() {seconds:.2f} s, client engine calls {client_calls}, "
          f"cluster compute {cluster_seconds:.1f} s, per worker {counts}, ORT threads per worker session {threads}")
    np.testing.assert_array_equal(got.values, expected.values)
    assert sum(c["chunks"] for c in counts.values()) >= dates, counts
    for worker, count in counts.items():
        assert count["sessions"] == (1 if count["chunks"] else 0), (worker, counts)
    assert threads == 1

    survived = compute_killing_a_worker(result, timeout=max(600.0, 4 * cluster_seconds))  # a busy host is slow
    np.testing.assert_array_equal(survived.values, expected.values)
