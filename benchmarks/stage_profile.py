"""Where the time goes in one chunk: preparation, inference, blending — measured on the real engine.

The engine's ``mask_array`` (output ``classes``) runs unchanged, with probes
that do not alter what it computes (module attributes swapped for the
duration of the call, the way a profiler hooks them):

- its onnxruntime session is wrapped in a timer (:class:`TimedSession`):
  **inference** is exactly the ``session.run`` time;
- ``predict`` records when the engine enters and leaves it;
  the time before is **preparation** (missing mask, the float32 copy where
  nodata or an offset must be written), the time after is **blending**
  (argmax, class codes, the missing class);
- inside it, ``_window_input`` (cutting each window, converting it to
  float32 and reflecting it onto the 32 px grid and past the image's end,
  in one copy) is timed as **preparation**; the rest (copying each window's
  core into the result) is **blending**.

So the split needs no copy of the engine and follows it when it changes.
The chunk is profiled at the grid phase the benchmark cube gives it, so the
lead padding is counted as in a real UDF call. A window sweep (the real
engine with other ``window_size`` values) is recorded beside it.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import numpy as np

from openeo_cloudmask.udf import cloud_mask as engine


class TimedSession:
    """Wraps an onnxruntime session; adds up the wall time of every ``run`` and the pixels fed to it."""

    def __init__(self, session):
        self._session = session
        self.seconds = 0.0
        self.calls = 0
        self.pixels = 0  # windows overlap, so more than the image has

    def run(self, outputs, feeds, *args, **kwargs):
        batch = next(iter(feeds.values()))
        start = time.perf_counter()
        try:
            return self._session.run(outputs, feeds, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1
            self.pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]

    def __getattr__(self, name):
        return getattr(self._session, name)


def timed_model(model):
    """A shallow copy of a loaded model whose session is a :class:`TimedSession`."""
    clone = copy.copy(model)
    clone.session = TimedSession(model.session)
    return clone


def _windows(model, height: int, width: int, window=None) -> tuple:
    """The engine's window grid for an image on the stride grid: (height, width, number of windows)."""
    window = window or model.window
    multiple = model.size_multiple
    window = max(model.min_tile_size, int(math.ceil(window / multiple) * multiple))
    win_h, rows = engine.tile_windows(height, window, 2 * model.overlap, multiple)
    win_w, cols = engine.tile_windows(width, window, 2 * model.overlap, multiple)
    return max(win_h, model.min_tile_size), max(win_w, model.min_tile_size), len(rows) * len(cols)


class _Probes:
    """Swap engine functions for timed wrappers while in a ``with`` block; times add up per name."""

    def __init__(self, names):
        self.names = names
        self.seconds = dict.fromkeys(names, 0.0)
        self.marks = {}
        self._originals = {}

    def _wrap(self, name, function):
        depth = [0]

        def timed(*args, **kwargs):  # outermost calls only: predict calls itself for the lead
            depth[0] += 1
            start = time.perf_counter()
            self.marks.setdefault(name + "_enter", start)
            try:
                return function(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:
                    end = time.perf_counter()
                    self.seconds[name] += end - start
                    self.marks[name + "_leave"] = end

        return timed

    def __enter__(self):
        for name in self.names:
            self._originals[name] = getattr(engine, name)
            setattr(engine, name, self._wrap(name, self._originals[name]))
        return self

    def __exit__(self, *exc):
        for name, function in self._originals.items():
            setattr(engine, name, function)


def engine_stages(model, dn: np.ndarray, origin=(0, 0)) -> dict:
    """One run of the real ``mask_array`` on (C, H, W) DN at grid ``origin``, split into stages (seconds)."""
    options = engine.parse_context({"model": model.card["id"]})
    timed = timed_model(model)
    with _Probes(("predict", "_window_input")) as probes:
        start = time.perf_counter()
        engine.mask_array(dn[None], options, timed, origin=origin)
        end = time.perf_counter()
    marks, sec = probes.marks, probes.seconds
    inside = sec["predict"]
    windowing = sec["_window_input"]
    inference = timed.session.seconds
    before = marks["predict_enter"] - start
    after = end - marks["predict_leave"]
    return {
        "total": end - start,
        "inference": inference,
        "preparation": before + windowing,
        "blending": (inside - inference - windowing) + after,
        "prep_before_windows": before,
        "prep_window_stacking": windowing,
        "blend_in_windows": inside - inference - windowing,
        "blend_after_windows": after,
        "session_calls": timed.session.calls,
    }


def _best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def window_sweep(model, dn: np.ndarray, windows, repeats: int = 3) -> list:
    """The real engine on one chunk with context ``window_size`` = each of ``windows`` (None: the card's).

    Per window: median seconds, pixels through the model ÷ chunk pixels
    (windows overlap), ``session.run`` calls, and the share of pixels whose
    class equals the card window's. Another window needs no engine change: it
    is the card's ``tiling.recommended_window`` or the context key.
    """
    model_dir = str(model.onnx_path.parent)
    rows, reference = [], None
    _, height, width = dn.shape
    for window in windows:
        options = engine.parse_context({"model": model.card["id"], "model_dir": model_dir, "window_size": window})
        codes = engine.mask_array(dn[None], options, model)[0, 0]  # warm-up, and the class map
        if reference is None:
            reference = codes
        times, timed = [], None
        for _ in range(repeats):
            timed = timed_model(model)
            start = time.perf_counter()
            engine.mask_array(dn[None], options, timed)
            times.append(time.perf_counter() - start)
        win_h, win_w, count = _windows(model, height, width, window)
        rows.append({
            "window_size": window or model.window,
            "windows": count,
            "window_shape": [win_h, win_w],
            "inferred_pixels_over_chunk_pixels": count * win_h * win_w / (height * width),
            "session_calls": timed.session.calls,
            "median_s": statistics.median(times),
            "agreement_with_default": float((codes == reference).mean()),
        })
    return rows


def _sweep_windows(model, chunk: int) -> list:
    """The card's window, then doubling up to the whole chunk (rounded up to the size multiple)."""
    windows, size = [None], model.window * 2
    whole = -(-chunk // model.size_multiple) * model.size_multiple
    while size < whole:
        windows.append(size)
        size *= 2
    if whole > model.window:
        windows.append(whole)
    return windows


def profile_chunk(model, dn: np.ndarray, repeats: int = 3, origin=(0, 0)) -> dict:
    """Stage shares of the real engine for one (4, H, W) DN chunk at grid ``origin`` (medians over ``repeats``)."""
    options = engine.parse_context({"model": model.card["id"]})
    engine.mask_array(dn[None], options, model, origin=origin)  # warm-up
    runs = [engine_stages(model, dn, origin) for _ in range(repeats)]
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    stages = ("preparation", "inference", "blending")
    covered = sum(med[s] for s in stages)
    return {
        "chunk": list(dn.shape),
        "repeats": repeats,
        "seconds": med,
        "shares": {s: med[s] / covered for s in stages},
        "engine_inference_share": med["inference"] / med["total"],
        "origin": list(origin),
        "window_sweep": window_sweep(model, dn, _sweep_windows(model, dn.shape[1]), repeats),
    }
