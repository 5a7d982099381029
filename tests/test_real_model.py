"""The shipped model through the UDF door: chunk independence and sanity on the demo scene.

These use the real `models/cloudmask-s2-4band` (not the tiny plumbing model),
so they carry the `slow` marker.
"""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from openeo_cloudmask.demo_scene import make_demo_scene
from openeo_cloudmask.udf import cloud_mask as engine
from test_udf import run_udf

MODELS = Path(__file__).resolve().parent.parent / "models"
CARD = MODELS / "cloudmask-s2-4band.json"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CARD.is_file(), reason="the trained model is not in models/"),
]


def four_chunks(cube: xr.DataArray, halo: int, context: dict) -> np.ndarray:
    """Mask as four overlapping chunks the way apply_neighborhood cuts them, halo trimmed, stitched."""
    height, width = cube.sizes["y"], cube.sizes["x"]
    stitched = np.zeros((height, width), dtype=np.uint8)
    for y0, y1 in ((0, height // 2), (height // 2, height)):
        for x0, x1 in ((0, width // 2), (width // 2, width)):
            ys, xs = max(0, y0 - halo), max(0, x0 - halo)
            chunk = cube.isel(y=slice(ys, min(height, y1 + halo)), x=slice(xs, min(width, x1 + halo)))
            out = run_udf(chunk, context).transpose("bands", "y", "x").values[0]
            stitched[y0:y1, x0:x1] = out[y0 - ys : y1 - ys, x0 - xs : x1 - xs]
    return stitched


@pytest.fixture(scope="module")
def demo_cube() -> xr.DataArray:
    scene = make_demo_scene(seed=3, size=1024)
    return scene.to_dataarray()


def test_whole_scene_equals_four_overlapping_chunks(demo_cube):
    options = engine.parse_context({})
    halo = options.halo(options.describe())
    whole = run_udf(demo_cube, {}).values[0]
    np.testing.assert_array_equal(four_chunks(demo_cube, halo, {}), whole)


def test_scene_larger_than_one_window_equals_chunks(demo_cube):
    """A 2600 px scene needs inner windows when masked whole; its chunks run as one window each.

    Chunks start at 1108 px (not a multiple of the network's 32 px stride): the
    engine anchors its windows on the global pixel grid of the x/y coordinates.
    """
    other = make_demo_scene(seed=4, size=1024).to_dataarray().values
    a = demo_cube.values
    mosaic = np.concatenate([np.concatenate([a, other], 2), np.concatenate([other, a], 2)], 1)
    mosaic = np.pad(mosaic, ((0, 0), (0, 552), (0, 552)), mode="reflect")
    n = mosaic.shape[-1]
    coords = {"bands": demo_cube.bands.values, "y": 5_300_000.0 - 10.0 * np.arange(n), "x": 400_000.0 + 10.0 * np.arange(n)}
    cube = xr.DataArray(mosaic, dims=("bands", "y", "x"), coords=coords)
    options = engine.parse_context({})
    model = options.describe()
    assert cube.sizes["x"] > model.window
    whole = run_udf(cube, {}).values[0]
    np.testing.assert_array_equal(four_chunks(cube, options.halo(model), {}), whole)


def test_demo_scene_mask_matches_the_generator_labels(demo_cube):
    """Not an accuracy claim (see models/EVALUATION.md): a guard that the shipped model still sees clouds."""
    scene = make_demo_scene(seed=3, size=1024)
    mask = run_udf(demo_cube, {}).values[0]
    truth = scene.labels
    assert (mask[truth == 5] == 5).all()
    cloudy = np.isin(truth, (3, 4))
    predicted_cloudy = np.isin(mask, (3, 4))
    recall = (cloudy & predicted_cloudy).sum() / cloudy.sum()
    precision = (cloudy & predicted_cloudy).sum() / predicted_cloudy.sum()
    assert recall > 0.7 and precision > 0.7, (recall, precision)
    assert set(np.unique(mask)) <= {1, 2, 3, 4, 5}


def test_dask_process_is_identical_to_the_engine(demo_cube):
    """The registered process over Dask chunks vs mask_cube on the whole 2048 px scene, real model.

    Bit-identical, probabilities included: every pixel is answered by a window that gives it the
    card's recommended_overlap of context on every side (more than the receptive field's reach),
    on the same global 32 px grid, whatever the chunking. The y axis starts off that grid, so the
    whole-scene run needs two inner windows along y. Coordinates are pixel centres, as backends
    give them, and the 701 px chunks start on odd pixels.
    """
    from openeo_cloudmask.backend_plugin.cloud_mask import mask_lazy

    other = make_demo_scene(seed=4, size=1024).to_dataarray().values
    a = demo_cube.values
    mosaic = np.concatenate([np.concatenate([a, other], 2), np.concatenate([other, a], 2)], 1)
    n = mosaic.shape[-1]
    centres = 5.0 + 10.0 * np.arange(n)
    coords = {"bands": demo_cube.bands.values, "y": 5_300_000.0 - centres, "x": 400_000.0 + centres}
    cube = xr.DataArray(mosaic, dims=("bands", "y", "x"), coords=coords)
    for output in ("classes", "probabilities"):
        whole = run_udf(cube, {"output": output}).values
        for chunk in (None, 700, 701):  # the default (the card's recommended_chunk) and off-grid chunk sizes
            chunked = mask_lazy(cube, {"output": output}, chunk_px=chunk).compute(scheduler="threads").values
            np.testing.assert_array_equal(chunked, whole, err_msg=f"{output}, chunk {chunk}")


def test_class_maps_from_the_graph_equal_the_argmax_of_its_probabilities(demo_cube):
    """Class maps come from the graph's ``classes`` output with the softmax switched off; they must be the
    probabilities' argmax, nodata included (``probabilities`` bands are in code order 1..5)."""
    model = engine.describe_model()
    assert model.classes_name == "classes" and model.probabilities_switch == "want_probabilities"
    cube = demo_cube.copy()
    cube[:, :40, :70] = 0
    classes = run_udf(cube, {"output": "classes"}).values[0]
    probs = run_udf(cube, {"output": "probabilities"}).values
    np.testing.assert_array_equal(classes, probs.argmax(axis=0) + 1)
    assert (classes[:40, :70] == 5).all()
