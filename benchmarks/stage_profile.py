"""Where the time goes in one chunk: preparation, inference, blending — measured on the real engine.

The engine's ``mask_array`` (output ``classes``) runs unchanged, with two
probes that do not alter what it computes:

- its onnxruntime session is wrapped in a timer (:class:`TimedSession`), so
  ``session.run`` time is exact: **inference**;
- ``predict_probabilities`` is wrapped (the module attribute, for the
  duration of the call) to record when the engine enters and leaves it; the
  time before is the rest of the **preparation** (dtype conversion, missing
  mask, zeroing missing pixels), the time after is the rest of the
  **blending** (argmax, code lookup, missing class).

Inside ``predict_probabilities``, what is not ``session.run`` is window
stacking (preparation) plus fading, accumulation and normalisation
(blending). The stacking is timed by replaying exactly the engine's stacking
for the same windows (``tile_windows``, ``_pad_to``, ``np.stack``), and
subtracted. So the split needs no copy of the engine and follows it when it
changes.

Further measured candidates (each a micro-benchmark on the same chunk's
arrays, plus the real engine with a different ``window_size``):
:data:`CANDIDATES`.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import numpy as np

from openeo_cloudmask.udf import cloud_mask as engine


class TimedSession:
    """Wraps an onnxruntime session; adds the wall time of every ``run`` to ``seconds``."""

    def __init__(self, session):
        self._session = session
        self.seconds = 0.0
        self.calls = 0

    def run(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def __getattr__(self, name):
        return getattr(self._session, name)


def timed_model(model):
    """A shallow copy of a loaded model whose session is a :class:`TimedSession`."""
    clone = copy.copy(model)
    clone.session = TimedSession(model.session)
    return clone


def _windows(model, height: int, width: int, window=None, batch: int = 4):
    """The engine's window grid for an image, as ``predict_probabilities`` computes it."""
    window = window or model.window
    multiple = model.size_multiple
    window = max(model.min_tile_size, int(math.ceil(window / multiple) * multiple))
    win_h, rows = engine.tile_windows(height, window, model.overlap, multiple)
    win_w, cols = engine.tile_windows(width, window, model.overlap, multiple)
    win_h, win_w = max(win_h, model.min_tile_size), max(win_w, model.min_tile_size)
    boxes = [(r, c) for r in rows for c in cols]
    return win_h, win_w, [boxes[i : i + batch] for i in range(0, len(boxes), batch)]


def replay_stacking(model, image: np.ndarray) -> float:
    """Seconds the engine spends cutting, padding and stacking the windows of ``image`` (C, H, W) float32."""
    _, height, width = image.shape
    win_h, win_w, groups = _windows(model, height, width)
    start = time.perf_counter()
    for group in groups:
        np.stack([engine._pad_to(image[:, r : r + win_h, c : c + win_w], win_h, win_w) for r, c in group])
    return time.perf_counter() - start


def engine_stages(model, dn: np.ndarray) -> dict:
    """One run of the real ``mask_array`` on (C, H, W) DN, split into stages (seconds)."""
    options = engine.parse_context({"model": model.card["id"]})
    timed = timed_model(model)
    marks = {}
    original = engine.predict_probabilities

    def probe(*args, **kwargs):
        marks["enter"] = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            marks["leave"] = time.perf_counter()

    engine.predict_probabilities = probe
    try:
        start = time.perf_counter()
        engine.mask_array(dn[None], options, timed)
        end = time.perf_counter()
    finally:
        engine.predict_probabilities = original
    stacking = replay_stacking(model, dn.astype(np.float32))
    inside = marks["leave"] - marks["enter"]
    inference = timed.session.seconds
    return {
        "total": end - start,
        "inference": inference,
        "preparation": (marks["enter"] - start) + stacking,
        "blending": (inside - inference - stacking) + (end - marks["leave"]),
        "prep_before_windows": marks["enter"] - start,
        "prep_window_stacking": stacking,
        "blend_in_windows": inside - inference - stacking,
        "blend_after_windows": end - marks["leave"],
        "session_calls": timed.session.calls,
    }


def _best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


CANDIDATES = {
    "skip_normalisation_for_classes": (
        "output 'classes': skip `np.reciprocal(weights)` + `total *= weights` at the end of predict_probabilities "
        "(argmax is unchanged by a positive per-pixel factor; keep it for 'probabilities'/'cloud_detection'), e.g. "
        "a `normalise=True` parameter that mask_array sets to `output != 'classes'`"
    ),
    "missing_mask_one_pass": (
        "integer input (the usual uint16 DN): build the missing mask as `(image == 0).any(axis=0)` only; the "
        "`~np.isfinite(image).all(axis=0)` pass can only be true for float input"
    ),
    "argmax_putmask": (
        "`argmax_classes`: per class `np.greater(probs[k], best, out=better)` into one reused bool buffer and "
        "`np.putmask(index, better, k)` instead of allocating `probs[k] > best` and `np.copyto(index, k, where=better)`"
    ),
    "codes_by_offset": (
        "class codes: when the card's codes are 1..K in order (they are), `np.add(index, 1, out=index)` instead of "
        "the fancy-index lookup `codes_lookup[index]`"
    ),
    "skip_missing_write": (
        "`codes[missing] = MISSING` after the argmax: skip when `any_missing` is False, as the other missing "
        "writes already are"
    ),
}


def candidate_gains(model, dn: np.ndarray, repeats: int = 5) -> dict:
    """Seconds each candidate change saves on this chunk (micro-benchmarks of the exact operations removed)."""
    k = len(model.class_codes)
    _, height, width = dn.shape
    rng = np.random.default_rng(0)
    total = rng.random((k, height, width), dtype=np.float32)
    weights = rng.random((height, width), dtype=np.float32) + 0.5
    image = dn.astype(np.float32)
    missing = np.zeros((height, width), dtype=bool)
    codes = np.ones((height, width), dtype=np.uint8)

    def normalise():
        w = weights.copy()
        np.reciprocal(w, out=w)
        np.multiply(total, w, out=total)

    def argmax_putmask(probs):
        best = probs[0].copy()
        index = np.zeros(best.shape, dtype=np.uint8)
        better = np.empty(best.shape, dtype=bool)
        for j in range(1, probs.shape[0]):
            np.greater(probs[j], best, out=better)
            np.maximum(best, probs[j], out=best)
            np.putmask(index, better, j)
        return index

    if not np.array_equal(argmax_putmask(total), engine.argmax_classes(total)):
        raise AssertionError("argmax_putmask disagrees with the engine's argmax_classes")
    index = engine.argmax_classes(total)
    lookup = np.asarray(model.class_codes, dtype=np.uint8)

    copy_cost = _best_of(lambda: weights.copy(), repeats)
    return {
        "argmax_putmask": max(0.0, _best_of(lambda: engine.argmax_classes(total), repeats)
                              - _best_of(lambda: argmax_putmask(total), repeats)),
        "codes_by_offset": max(0.0, _best_of(lambda: lookup[index], repeats)
                               - _best_of(lambda: np.add(index, 1, out=index.copy()), repeats)
                               + _best_of(lambda: index.copy(), repeats)),
        "skip_normalisation_for_classes": max(0.0, _best_of(normalise, repeats) - copy_cost),
        "missing_mask_one_pass": max(0.0, _best_of(lambda: ~np.isfinite(image).all(axis=0) | (image == 0).any(axis=0),
                                                   repeats) - _best_of(lambda: (image == 0).any(axis=0), repeats)),
        "skip_missing_write": _best_of(lambda: codes.__setitem__(missing, 5), repeats),
    }


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
        win_h, win_w, groups = _windows(model, height, width, window)
        count = sum(len(g) for g in groups)
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


def profile_chunk(model, dn: np.ndarray, repeats: int = 3) -> dict:
    """Stage shares of the real engine for one (4, H, W) DN chunk (medians over ``repeats``), and candidates."""
    options = engine.parse_context({"model": model.card["id"]})
    engine.mask_array(dn[None], options, model)  # warm-up
    runs = [engine_stages(model, dn) for _ in range(repeats)]
    med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    stages = ("preparation", "inference", "blending")
    covered = sum(med[s] for s in stages)
    gains = candidate_gains(model, dn)
    return {
        "chunk": list(dn.shape),
        "repeats": repeats,
        "seconds": med,
        "shares": {s: med[s] / covered for s in stages},
        "engine_inference_share": med["inference"] / med["total"],
        "candidates": CANDIDATES,
        "candidate_gain_s": gains,
        "candidate_gain_share_of_chunk": {name: gain / med["total"] for name, gain in gains.items()},
        "window_sweep": window_sweep(model, dn, _sweep_windows(model, dn.shape[1]), repeats),
    }
