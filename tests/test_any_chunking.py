"""Any chunking equals the whole scene: the engine's tiling promise, tried on random chunks (hypothesis).

A backend cuts a scene into chunks of any size at any offset and hands each
one to the engine with a halo around it (``apply_neighborhood``'s overlap).
The README promises that the pixels of a chunk's core are then bit-identical,
probabilities included, to a whole-scene run, because the engine anchors its
windows on the scene's grid (from the x/y coordinates) and the halo holds the
model's reach. Here hypothesis draws the chunk (size 1 px and up, any offset,
clipped at the scene's edges like a backend's), the output kind, the buffer
and a ``t`` dimension; the halo is the one the engine asks for
(``Options.halo``). The tiny model (``tests/tiny_model.py``: 64 px windows,
8 px overlap, stride 8) runs many examples fast, and scenes larger than its
window exercise the engine's inner windows; a few examples run the real model.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Even without an example database, hypothesis caches source constants under ./.hypothesis: keep the clone clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "openeo-cloudmask-hypothesis"))

from openeo_cloudmask.udf.cloud_mask import describe_model, mask_cube, parse_context

# No example database in the working tree; engine calls take milliseconds to seconds, not a fixed deadline.
COMMON = dict(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PIXEL_M = 10.0


def scene_cube(height: int, width: int, seed: int, x0: float = 500_010.0, y0: float = 5_000_000.0) -> xr.DataArray:
    """A (bands, y, x) uint16 cube of smooth blobs over noise, with 0 (missing) holes, on a 10 m grid.

    The grid's origin is deliberately not a multiple of the model's stride, so
    the engine's grid anchoring is what makes chunks agree.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    brightness = np.full((height, width), 800.0)
    for _ in range(6):  # blobs from dark (shadow) to bright (cloud) for the tiny model's thresholds
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 60)
        brightness += rng.uniform(-600, 7000) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    dn = brightness[None] * rng.uniform(0.85, 1.15, (4, 1, 1)) + rng.normal(0, 150, (4, height, width))
    dn = np.clip(dn, 1, 12000).astype(np.uint16)
    holes = rng.random((height, width)) < 0.002
    dn[:, holes] = 0
    return xr.DataArray(
        dn, dims=("bands", "y", "x"),
        coords={"bands": ["B02", "B03", "B04", "B08"],
                "x": x0 + PIXEL_M * (np.arange(width) + 0.5), "y": y0 - PIXEL_M * (np.arange(height) + 0.5)},
    )


@st.composite
def chunks(draw, height: int, width: int, max_edge: int):
    """``(rows, cols)`` of a chunk core: any offset in the scene, 1..max_edge px per side."""
    r0 = draw(st.integers(0, height - 1))
    c0 = draw(st.integers(0, width - 1))
    r1 = draw(st.integers(r0 + 1, min(height, r0 + max_edge)))
    c1 = draw(st.integers(c0 + 1, min(width, c0 + max_edge)))
    return slice(r0, r1), slice(c0, c1)


def chunk_result(cube: xr.DataArray, rows: slice, cols: slice, context: dict) -> np.ndarray:
    """Mask the chunk with the halo the engine asks for (clipped at the scene's edges); return its core."""
    options = parse_context(context)
    halo = options.halo(describe_model(options.model, options.model_dir), PIXEL_M)
    height, width = cube.sizes["y"], cube.sizes["x"]
    r0, r1 = max(0, rows.start - halo), min(height, rows.stop + halo)
    c0, c1 = max(0, cols.start - halo), min(width, cols.stop + halo)
    result = mask_cube(cube.isel(y=slice(r0, r1), x=slice(c0, c1)), context)
    return result.isel(y=slice(rows.start - r0, rows.stop - r0), x=slice(cols.start - c0, cols.stop - c0))


# --------------------------------------------------------------------------- the tiny model: many examples

TINY_H, TINY_W = 181, 203  # larger than the tiny model's 64 px window: the engine cuts inner windows too
TINY_CUBE = scene_cube(TINY_H, TINY_W, seed=3)
OUTPUTS = st.sampled_from([
    {"output": "classes"},
    {"output": "probabilities"},
    {"output": "cloud_detection"},
    {"output": "classes", "buffer_m": 30},
    {"output": "cloud_detection", "buffer_m": 50},
])


@pytest.fixture(scope="module")
def tiny_whole(tiny_context):
    """Whole-scene results per output context, computed once."""
    cache = {}

    def whole(context: dict, with_t: bool) -> xr.DataArray:
        key = (tuple(sorted(context.items())), with_t)
        if key not in cache:
            cube = TINY_CUBE.expand_dims(t=2).copy() if with_t else TINY_CUBE
            cache[key] = mask_cube(cube, {**tiny_context, **context})
        return cache[key]

    return whole


@settings(max_examples=60, **COMMON)
@given(chunk=chunks(TINY_H, TINY_W, max_edge=150), output=OUTPUTS, with_t=st.booleans())
def test_any_chunk_with_its_halo_equals_the_whole_scene(tiny_context, tiny_whole, chunk, output, with_t):
    rows, cols = chunk
    context = {**tiny_context, **output}
    cube = TINY_CUBE.expand_dims(t=2).copy() if with_t else TINY_CUBE
    got = chunk_result(cube, rows, cols, context)
    want = tiny_whole(output, with_t).isel(y=rows, x=cols)
    assert got.dims == want.dims and got.dtype == want.dtype
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got["x"].values, want["x"].values)


@settings(max_examples=25, **COMMON)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_a_whole_scene_smaller_than_a_window_or_halo(tiny_context, rows, cols, seed):
    """A scene of any small size is one chunk with no room for a halo: it still masks, and its shape is kept."""
    cube = scene_cube(rows, cols, seed=seed)
    result = mask_cube(cube, tiny_context)
    assert result.shape == (1, rows, cols)
    assert set(np.unique(result.values)) <= {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------- the real model: a few examples

REAL_H, REAL_W = 700, 760


@pytest.fixture(scope="module")
def real_whole():
    if not describe_model().onnx_path.is_file():
        pytest.skip("the real model is not in models/")
    cube = scene_cube(REAL_H, REAL_W, seed=5)
    # window_size 576 (the least the card's 256 px overlap allows, rounded to the stride): inner windows even here
    context = {"window_size": 576}
    return cube, context, mask_cube(cube, context)


@pytest.mark.slow
@settings(max_examples=4, **COMMON)
@given(chunk=chunks(REAL_H, REAL_W, max_edge=400))
def test_any_chunk_equals_the_whole_scene_with_the_real_model(real_whole, chunk):
    cube, context, whole = real_whole
    rows, cols = chunk
    np.testing.assert_array_equal(chunk_result(cube, rows, cols, context).values, whole.isel(y=rows, x=cols).values)
