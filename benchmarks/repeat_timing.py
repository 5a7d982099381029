"""Median wall-clock time over repeated runs, after one untimed warm-up run."""

from __future__ import annotations

import gc
import statistics
import time


def time_repeats(run, repeats: int, warmup: bool = True) -> dict:
    """Call ``run()`` ``repeats`` times (plus one warm-up) and return the times in seconds and their median.

    The garbage collector is run before and disabled during each timed call, so
    a collection triggered by an earlier method does not land in a later one.
    """
    if warmup:
        run()
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return {"seconds": [round(t, 4) for t in times], "median_s": statistics.median(times)}


def mpx_per_s(pixels: int, seconds: float) -> float:
    return pixels / seconds / 1e6
