"""The cloud-free composite graph on a ``dask.distributed`` LocalCluster, checked against a local run.

    python examples/dask_cluster.py [--workers 2] [--data STACK.nc] [--model-dir DIR] [--model ID]

The graph is built lazily in this process (only model cards are read), then
computed once on the cluster and once with the local synchronous scheduler;
the two must be identical. Each worker process creates the ONNX session once,
whatever the number of chunks: the counts are printed.
"""

import argparse
import json
import logging
import sys

import numpy as np

from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph


def main(argv=None) -> int:
    from composite_before_after import GRAPH, load_stack  # same folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default=None)
    parser.add_argument("--model", default="cloudmask-s2-4band")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--chunk", type=int, default=64, help="spatial chunk edge in pixels")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    stack = load_stack(args.data).chunk(x=args.chunk, y=args.chunk)
    registry = build_registry(model_dir=args.model_dir)
    result = run_process_graph(json.loads(GRAPH.read_text()), registry, {"data": stack, "model": args.model})
    local = result.compute(scheduler="synchronous")

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        remote = client.compute(result).result()
        loads = client.run(lambda: __import__("openeo_cloudmask.udf.cloud_mask", fromlist=["_"]).SESSION_LOADS["count"])
    same = np.array_equal(remote.values, local.values, equal_nan=True)
    print(f"composite {dict(remote.sizes)}: cluster == local: {same}")
    print("ONNX sessions per worker:", {address.rsplit(":", 1)[-1]: count for address, count in loads.items()})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
