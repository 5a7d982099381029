"""The built-in demo scene: seeded, offline, and plausible as a Sentinel-2 L2A scene."""

import numpy as np
import pytest

from openeo_cloudmask.demo_scene import BANDS, CRS, DEFAULT_SIZE, make_demo_scene

CLEAR, SHADOW, SEMI, CLOUD, MISSING = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def scene():
    return make_demo_scene(seed=7, size=256)


def test_same_seed_same_scene_other_seed_other_scene(scene):
    again = make_demo_scene(seed=7, size=256)
    np.testing.assert_array_equal(scene.dn, again.dn)
    np.testing.assert_array_equal(scene.labels, again.labels)
    other = make_demo_scene(seed=8, size=256)
    assert not np.array_equal(scene.dn, other.dn)


def test_layout_and_dtypes(scene):
    assert scene.dn.shape == (4, 256, 256)
    assert scene.dn.dtype == np.uint16
    assert scene.labels.shape == (256, 256)
    assert scene.labels.dtype == np.uint8
    assert scene.bands == BANDS == ("B02", "B03", "B04", "B08")
    assert scene.crs == CRS == "EPSG:32633"


def test_every_class_is_present(scene):
    assert set(np.unique(scene.labels)) == {CLEAR, SHADOW, SEMI, CLOUD, MISSING}


def test_nodata_exactly_where_labelled_missing(scene):
    zero = (scene.dn == 0).any(axis=0)
    np.testing.assert_array_equal(zero, scene.labels == MISSING)
    assert ((scene.dn == 0).all(axis=0) == zero).all()  # all bands, or none


def test_clouds_brighter_and_shadows_darker_than_clear_ground(scene):
    visible = scene.dn[:3].astype(float).mean(axis=0)
    clear, shadow, cloud = (np.median(visible[scene.labels == c]) for c in (CLEAR, SHADOW, CLOUD))
    assert cloud > 3 * clear
    assert shadow < 0.7 * clear
    for band in range(4):  # darker in every band, near-infrared included
        b = scene.dn[band].astype(float)
        assert np.median(b[scene.labels == SHADOW]) < np.median(b[scene.labels == CLEAR])


def test_clear_ground_has_vegetation_reflectance(scene):
    """Clear land is mostly vegetated: dark in red, bright in near-infrared, as real L2A data."""
    clear = scene.labels == CLEAR
    red, nir = scene.dn[2][clear].astype(float), scene.dn[3][clear].astype(float)
    ndvi = (nir - red) / (nir + red)
    assert np.median(ndvi) > 0.4
    assert 100 < np.median(red) < 1500  # digital numbers, not reflectance 0..1


def test_dataarray_and_georeferencing(scene):
    cube = scene.to_dataarray()
    assert cube.dims == ("bands", "y", "x")
    assert list(cube.bands.values) == list(BANDS)
    assert float(cube.x[1] - cube.x[0]) == 10.0 and float(cube.y[1] - cube.y[0]) == -10.0
    transform = scene.transform
    assert transform.a == 10.0 and transform.e == -10.0
    assert float(cube.x[0]) == transform.c + 5.0 and float(cube.y[0]) == transform.f - 5.0


def test_default_scene_size():
    scene = make_demo_scene()
    assert scene.dn.shape == (4, DEFAULT_SIZE, DEFAULT_SIZE)
    fractions = np.bincount(scene.labels.ravel(), minlength=6)[1:] / scene.labels.size
    assert fractions[0] > 0.4  # mostly clear, like a usable scene
    assert (fractions > 0.02).all()


def test_too_small_a_scene_is_refused():
    with pytest.raises(ValueError, match="at least 64"):
        make_demo_scene(size=32)
