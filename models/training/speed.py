"""Throughput of our ONNX model and of ukis-csmask, measured in the same run on the same machine.

    python -m openeo_cloudmask.models.training.speed [--onnx models/cloudmask-s2-4band.onnx]

Ours: onnxruntime, CPU, intra_op_num_threads=2, float32, one 2048x2048 image
and a batch of eight 512x512 windows. ukis-csmask: its 4-band L2A model on a
1024x1024 image through its own ``CSmask`` class (tiling included), also with
two threads. Prints Mpx/s for both and the ratio; ``measure_speed`` returns
them for the evaluation report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent.parent
DEFAULT_ONNX = MODELS_DIR / "cloudmask-s2-4band.onnx"


def _best_rate(run, pixels: int, repeats: int) -> float:
    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return pixels / best / 1e6


def ours_mpx_per_s(onnx_path: str | Path, threads: int = 2, repeats: int = 3) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    whole = (rng.random((1, 4, 2048, 2048)) * 5000).astype(np.float32)
    windows = (rng.random((8, 4, 512, 512)) * 5000).astype(np.float32)
    outputs = [session.get_outputs()[0].name]  # the probabilities (a graph may also offer class indices)
    return {
        "whole_2048": _best_rate(lambda: session.run(outputs, {"dn": whole}), 2048 * 2048, repeats),
        "batch_8x512": _best_rate(lambda: session.run(outputs, {"dn": windows}), 8 * 512 * 512, repeats),
    }


def ukis_mpx_per_s(threads: int = 2, size: int = 1024, repeats: int = 1) -> float:
    import warnings

    from ukis_csmask.mask import CSmask

    rng = np.random.default_rng(0)
    image = (rng.random((size, size, 4)) * 0.5).astype(np.float32)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CSmask(image.copy(), ["blue", "green", "red", "nir"], product_level="l2a",
                   intra_op_num_threads=threads, inter_op_num_threads=1, providers=["CPUExecutionProvider"])

    return _best_rate(run, size * size, repeats)


def measure_speed(onnx_path: str | Path = DEFAULT_ONNX, threads: int = 2) -> dict:
    ours = ours_mpx_per_s(onnx_path, threads)
    ukis = ukis_mpx_per_s(threads)
    slowest = min(ours.values())
    return {
        "ours_mpx_per_s_2048": round(ours["whole_2048"], 2),
        "ours_mpx_per_s_8x512": round(ours["batch_8x512"], 2),
        "ukis_csmask_mpx_per_s": round(ukis, 3),
        "speedup_vs_ukis_csmask": round(slowest / ukis, 1),
        "threads": threads,
        "onnx_size_mb": round(Path(onnx_path).stat().st_size / 1e6, 3),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-ukis", action="store_true", help="measure only our model")
    args = parser.parse_args(argv)
    if args.skip_ukis:
        print(ours_mpx_per_s(args.onnx, args.threads))
        return 0
    result = measure_speed(args.onnx, args.threads)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
