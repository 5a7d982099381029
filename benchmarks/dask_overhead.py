"""Overhead of the registered ``cloud_mask`` process (Dask, chunked with halo) over the engine on the whole scene.

    python benchmarks/dask_overhead.py [--model ID] [--model-dir DIR] [--size 2048] [--dates 3] [--chunk 1024]
                                       [--repeats 5] [--memory-scales 1,2] [--out benchmarks/dask_overhead.json]

Timing (same process, same scene, model loaded before timing, median of
``--repeats``): ``engine`` is ``mask_cube`` on the in-memory cube;
``dask_1thread`` is the ``cloud_mask`` process graph run through the parser
and computed with Dask's threaded scheduler and one worker thread, so both use
onnxruntime's threads the same way. Overhead = dask / engine - 1; the halo's
recomputation ((chunk + 2 x halo)^2 / chunk^2 - 1) is part of it and is
reported alongside.

Memory: a child process per scene size reads the scene lazily from NetCDF in
``--chunk`` chunks, runs the graph and streams the mask to NetCDF with the
synchronous scheduler; its peak RSS minus its RSS before computing is the
working memory. The scene is 1x, 4x (2 x 2 chunks) and 16x the chunk area: memory
bounded by the chunk stays flat while the scene grows 4x (and 16x).

Without ``models/cloudmask-s2-4band.json`` use the tiny test model
(``--model tiny-test --model-dir DIR``, built by ``tests/tiny_model.py``);
the JSON records which model ran.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask.udf import cloud_mask as engine

HERE = Path(__file__).resolve().parent


def scene(size: int, dates: int) -> xr.DataArray:
    from openeo_cloudmask.demo_scene import make_demo_scene

    frames = [make_demo_scene(seed=seed, size=size).to_dataarray() for seed in range(1, dates + 1)]
    cube = xr.concat([f.assign_coords(x=frames[0].x, y=frames[0].y) for f in frames], dim="t")
    return cube.assign_coords(t=np.arange(dates))


def graph(model: str) -> dict:
    return {"process_graph": {"mask1": {"process_id": "cloud_mask",
                                        "arguments": {"data": {"from_parameter": "data"}, "model": model}, "result": True}}}


def median_seconds(function, repeats: int) -> tuple:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def rss_mib(field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its high-water mark (``VmHWM``) of this process, in MiB.

    Not ``getrusage().ru_maxrss``: a child inherits its parent's maxrss across
    fork and exec, so it would report the parent's peak (the scene generator's).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def memory_child(args) -> None:
    """Child process: lazy NetCDF in, graph, mask streamed to NetCDF; print the working memory as JSON."""
    import dask

    from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph

    registry = build_registry(model_dir=args.model_dir)
    engine.load_model(args.model, args.model_dir)  # the session is not part of the working memory
    cube = xr.open_dataarray(args.memory_input, chunks={"t": 1, "bands": -1, "y": args.chunk, "x": args.chunk})
    before = rss_mib()
    result = run_process_graph(graph(args.model), registry, {"data": cube})
    with dask.config.set(scheduler="synchronous"):
        result.to_dataset(name="cloud_mask").to_netcdf(args.memory_output)
    peak = rss_mib("VmHWM")
    print(json.dumps({"rss_before_mib": before, "peak_rss_mib": peak, "working_mib": peak - before,
                      "scene": dict(cube.sizes), "chunks": result.data.npartitions}))


def measure_memory(args, size: int, folder: Path) -> dict:
    path = folder / f"scene_{size}.nc"
    scene(size, args.dates).rename("reflectance").to_netcdf(path)
    command = [sys.executable, __file__, "--memory-input", str(path), "--memory-output", str(folder / f"mask_{size}.nc"),
               "--model", args.model, "--chunk", str(args.chunk)]
    if args.model_dir:
        command += ["--model-dir", str(args.model_dir)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=engine.DEFAULT_MODEL)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--dates", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-scales", default="1,2,4", help="scene edge / chunk edge for the memory runs")
    parser.add_argument("--out", default=str(HERE / "dask_overhead.json"))
    parser.add_argument("--memory-input", help=argparse.SUPPRESS)
    parser.add_argument("--memory-output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_input:
        memory_child(args)
        return 0

    from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph

    cube = scene(args.size, args.dates)
    context = {"model": args.model, "model_dir": args.model_dir}
    model = engine.load_model(args.model, args.model_dir)
    registry = build_registry(model_dir=args.model_dir)
    chunked = cube.chunk({"t": 1, "bands": -1, "y": args.chunk, "x": args.chunk})

    def direct():
        return engine.mask_cube(cube, context)

    def through_dask():
        return run_process_graph(graph(args.model), registry, {"data": chunked}).compute(scheduler="threads", num_workers=1)

    built = run_process_graph(graph(args.model), registry, {"data": chunked})

    def compute_only():
        return built.compute(scheduler="threads", num_workers=1)

    reference = direct().values
    agreement = float((through_dask().values == reference).mean())
    engine_s, engine_runs = median_seconds(direct, args.repeats)
    dask_s, dask_runs = median_seconds(through_dask, args.repeats)
    compute_s, _ = median_seconds(compute_only, args.repeats)
    halo = model.overlap
    with tempfile.TemporaryDirectory() as folder:
        scales = [int(k) for k in args.memory_scales.split(",")]
        memory = {f"{k * args.chunk}px": measure_memory(args, k * args.chunk, Path(folder)) for k in scales}
    small, large, larger = (memory.get(f"{k * args.chunk}px", {"working_mib": float("nan")}) for k in (1, 2, 4))
    record = {
        "model": {"id": model.card["id"], "version": model.card.get("version"), "tiny_test_model": model.card["id"] == "tiny-test"},
        "scene": {"dates": args.dates, "bands": 4, "size_px": args.size, "chunk_px": args.chunk, "halo_px": halo},
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "engine_seconds_median": engine_s,
        "dask_seconds_median": dask_s,
        "engine_seconds": engine_runs,
        "dask_seconds": dask_runs,
        "overhead": dask_s / engine_s - 1.0,
        "dask_compute_only_seconds_median": compute_s,
        "overhead_compute_only": compute_s / engine_s - 1.0,
        "graph_build_seconds": dask_s - compute_s,
        "overhead_target": 0.15,
        "halo_extra_pixels": ((args.chunk + 2 * halo) / args.chunk) ** 2 - 1.0,
        "classes_agreement_with_engine": agreement,
        "memory": memory,
        "memory_ratio_4x_scene": large["working_mib"] / max(small["working_mib"], 1e-6),
        "memory_ratio_16x_scene": larger["working_mib"] / max(small["working_mib"], 1e-6),
        "note": "dask = parser + registry + cloud_mask process, threaded scheduler, 1 worker thread; engine = mask_cube on the whole in-memory cube",
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"model {record['model']['id']}: engine {engine_s:.2f} s, dask {dask_s:.2f} s, overhead {record['overhead']:+.1%} "
          f"(compute only {record['overhead_compute_only']:+.1%}, halo recompute {record['halo_extra_pixels']:.1%}); "
          f"working memory {small['working_mib']:.0f} / {large['working_mib']:.0f} / {larger['working_mib']:.0f} MiB "
          f"for scenes of 1 / 4 / 16 chunks -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
