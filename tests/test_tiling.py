"""One tiling rule for every door (issue 20, item 2): small cubes, odd sizes, with and without ``t``.

The local ``apply_neighborhood`` running the UDF with the UDP's body
(``cloud_mask.neighborhood_graph``, the card's chunk and halo) and the
``cloud_mask`` process must give exactly the engine's whole-cube answer on any
cube, including cubes smaller than the halo (Dask refuses an overlap deeper
than the array) and sizes whose last chunk is a sliver.

The sweep over sizes runs the real model on strips a few pixels wide. By
default it tries the sizes around every chunk and halo boundary up to 2100 px;
``OPENEO_CLOUDMASK_FULL_SWEEP=1`` tries every size from 1 to 2100 px
(``OPENEO_CLOUDMASK_FULL_SWEEP=1 .venv/bin/python -m pytest tests/test_tiling.py -k sweep``).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from openeo_cloudmask import tiling
from openeo_cloudmask.backend_plugin import cloud_mask as process
from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph
from openeo_cloudmask.udf import cloud_mask as engine

REPO = Path(__file__).resolve().parent.parent
UDF_CODE = (REPO / "udf" / "cloud_mask.py").read_text()
MAX_SIZE = 2100


# --------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize(
    ("length", "chunk", "halo", "expected"),
    [
        (1, 512, 256, (1,)),
        (220, 512, 256, (220,)),  # smaller than one chunk and than the halo: whole
        (600, 512, 256, (600,)),  # the 88 px sliver joins its neighbour (the old IndexError)
        (768, 512, 256, (512, 256)),  # a last chunk exactly as deep as the halo stays
        (767, 512, 256, (767,)),
        (1100, 512, 256, (512, 588)),
        (1536, 512, 256, (512, 512, 512)),
        (100, 10, 30, (30, 30, 40)),  # chunks thinner than the halo are raised to it
        (0, 512, 256, (0,)),
        (300, None, 8, (300,)),
    ],
)
def test_axis_chunks(length, chunk, halo, expected):
    sizes = tiling.axis_chunks(length, chunk, halo)
    assert sizes == expected and sum(sizes) == length
    assert len(sizes) == 1 or min(sizes) >= halo


def test_existing_dask_chunks_are_kept_only_when_each_holds_the_halo():
    assert tiling.axis_chunks(1000, 512, 256, current=(300, 300, 400)) == (300, 300, 400)
    assert tiling.axis_chunks(1000, 512, 256, current=(500, 500 - 300, 300)) == (512, 488)
    assert tiling.axis_chunks(1000, 512, 256, current=(1000,)) == (512, 488)  # one piece: cut by the rule


def test_blocks_cover_the_image_once_and_read_the_halo():
    height, width, chunk, halo = 130, 61, 48, 8
    seen = np.zeros((height, width), dtype=int)
    for (rows, cols), (grown_rows, grown_cols) in tiling.blocks(height, width, chunk, halo):
        seen[rows, cols] += 1
        assert grown_rows.start == max(0, rows.start - halo) and grown_rows.stop == min(height, rows.stop + halo)
        assert grown_cols.start == max(0, cols.start - halo) and grown_cols.stop == min(width, cols.stop + halo)
    assert (seen == 1).all()


# --------------------------------------------------------------------------- the doors, real model


def scene(height: int, width: int, dates: int = 2, seed: int = 0) -> xr.DataArray:
    """A (t, bands, y, x) uint16 cube with clear land, haze, cloud and shadow at several scales, on a 10 m grid.

    Pixel centres as backends give them, and an origin off the model's 32 px grid.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(dates):
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        base = 900 + 300 * np.sin(yy / 37.0 + rng.uniform(0, 6)) * np.cos(xx / 23.0 + rng.uniform(0, 6))
        for _ in range(8):
            cy, cx, r = rng.uniform(0, max(height, 1)), rng.uniform(0, max(width, 1)), rng.uniform(4, 90)
            base = base + rng.uniform(-700, 7000) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        base = np.clip(base + rng.normal(0, 40, base.shape), 1, 15000)
        frames.append(np.stack([base, base * 0.97, base * 1.02, base * 1.15]))
    dn = np.stack(frames).astype(np.uint16)
    return xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={
        "t": np.datetime64("2024-06-01") + 5 * np.arange(dates).astype("timedelta64[D]"),
        "bands": ["B02", "B03", "B04", "B08"],
        "y": 5_300_005.0 - 10.0 * (np.arange(height) + 13), "x": 400_005.0 + 10.0 * (np.arange(width) + 7)})


@pytest.fixture(scope="module")
def registry():
    return build_registry()  # the real model, found where the engine looks by default


def udp_body_graph() -> dict:
    """What the UDP runs: apply_neighborhood(run_udf) with the card's chunk and halo, the spec's parameters."""
    size, overlap = process.neighborhood_window()
    return {"process_graph": process.neighborhood_graph(UDF_CODE, size, overlap),
            "parameters": process.load_spec()["parameters"]}


def cloud_mask_graph() -> dict:
    return {"process_graph": {"m": {"process_id": "cloud_mask", "arguments": {"data": {"from_parameter": "data"}},
                                    "result": True}}}


def assert_doors_equal_the_engine(registry, cube: xr.DataArray) -> None:
    expected = engine.mask_cube(cube)
    for name, graph in (("apply_neighborhood (UDP body)", udp_body_graph()), ("cloud_mask process", cloud_mask_graph())):
        result = run_process_graph(graph, registry, {"data": cube})
        got = result.compute(scheduler="synchronous")
        assert got.dims == expected.dims, name
        np.testing.assert_array_equal(got.values, expected.values, err_msg=f"{name}, cube {dict(cube.sizes)}")


@pytest.mark.slow
@pytest.mark.parametrize("with_t", [True, False], ids=["with-t", "without-t"])
@pytest.mark.parametrize("shape", [(1, 1), (100, 100), (220, 350), (600, 600)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_small_and_odd_cubes_at_every_door(registry, shape, with_t):
    cube = scene(*shape)
    if not with_t:
        cube = cube.isel(t=0, drop=True)
    assert_doors_equal_the_engine(registry, cube)


def sweep_sizes() -> list:
    if os.environ.get("OPENEO_CLOUDMASK_FULL_SWEEP"):
        return list(range(1, MAX_SIZE + 1))
    options = engine.parse_context({})
    model = options.describe()
    chunk, halo = options.chunk(model), options.halo(model)
    edges = {1, 2, 31, 32, 33, 63, 64, 65, MAX_SIZE}
    for n in range(1, MAX_SIZE // chunk + 2):
        for edge in (n * chunk, n * chunk + halo):
            edges.update({edge - 1, edge, edge + 1})
    return sorted(size for size in edges if 1 <= size <= MAX_SIZE)


@pytest.mark.slow
def test_sweep_of_sizes_along_one_axis(registry):
    """Every door on strips 1..2100 px long (the sizes at every chunk and halo edge; all with the full sweep)."""
    base = scene(MAX_SIZE, 24, dates=1, seed=5)
    for size in sweep_sizes():
        strip = base.isel(y=slice(0, size))
        assert_doors_equal_the_engine(registry, strip.isel(t=0, drop=True) if size % 2 else strip)


@pytest.mark.slow
def test_sizes_along_x_on_a_wider_cube(registry):
    """The other axis, on a cube several chunks wide across: folded slivers, halos on both axes."""
    base = scene(300, MAX_SIZE, dates=1, seed=6).isel(t=0, drop=True)
    for size in (1, 255, 256, 257, 600, 767, 768, 769, 1100, 2048, 2049, MAX_SIZE):
        assert_doors_equal_the_engine(registry, base.isel(x=slice(0, size)))
