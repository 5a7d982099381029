"""The training pipeline: synthetic labels, teacher mapping, data-folder errors, and (with torch) the network."""

import math
import os
from pathlib import Path

import numpy as np
import pytest

from openeo_cloudmask.models.training import scenes
from openeo_cloudmask.models.training.synthetic import (
    CLOUD_KINDS,
    SEMI,
    SEMI_ALBEDO,
    SURFACE_SPECTRA,
    demo_scene,
    fractal_noise,
    procedural_background,
    semi_threshold,
    synthesize,
    synthesize_sets,
)
from openeo_cloudmask.models.training.teacher import membership_targets, ukis_classes_as_ours

SHARED = Path(os.environ.get(scenes.DATA_ENV) or scenes.REPO_ROOT.parent / "shared" / "data")
needs_shared_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared Sentinel-2 data not found at {SHARED}")


def test_demo_scene_has_all_five_classes_and_is_deterministic():
    dn, label = demo_scene(seed=0)
    assert dn.shape == (4, 128, 128) and dn.dtype == np.float32
    assert set(np.unique(label)) == {1, 2, 3, 4, 5}
    dn2, label2 = demo_scene(seed=0)
    np.testing.assert_array_equal(dn, dn2)
    np.testing.assert_array_equal(label, label2)
    assert not np.array_equal(label, demo_scene(seed=1)[1])


def test_synthetic_labels_are_exact():
    dn, label = demo_scene(seed=3)
    missing = label == 5
    np.testing.assert_array_equal(missing, np.all(dn == 0, axis=0))  # nodata exactly where DN is 0
    assert np.all(dn[:, ~missing] > 0)
    refl = dn / 10000.0
    # opaque cloud is brighter than the clear surface; shadow is darker in NIR than clear surface
    assert refl[:3, label == 4].mean() > refl[:3, label == 1].mean() + 0.15
    assert refl[3, label == 2].mean() < refl[3, label == 1].mean()


def _uniform_surface(name: str, size: int = 96) -> np.ndarray:
    return np.broadcast_to(np.asarray(SURFACE_SPECTRA[name], np.float32)[:, None, None], (4, size, size)).copy()


def test_thin_cloud_is_labelled_where_it_is_visible():
    # the same haze (same seed, so the same thickness field) over open water and over vegetation
    options = {"kinds": ["haze"], "nodata": False}
    _, over_water = synthesize(_uniform_surface("water"), np.random.default_rng(4), margin=16, options=options)
    _, over_land = synthesize(_uniform_surface("vegetation"), np.random.default_rng(4), margin=16, options=options)
    semi_water, semi_land = over_water == SEMI, over_land == SEMI
    assert np.all(semi_water[semi_land])  # visible over land -> visible over water
    assert semi_water.mean() > semi_land.mean() + 0.05  # and more of it is visible over water (0.36 vs 0.27)
    assert semi_threshold(_uniform_surface("water", 2)).max() < 0.03  # A = 0.03 doubles water's brightness
    assert np.all(semi_threshold(_uniform_surface("soil", 2)) == SEMI_ALBEDO)  # bright land: unchanged


def test_a_lower_contrast_threshold_labels_fainter_haze_over_dark_surfaces_only():
    options = {"kinds": ["haze"], "nodata": False}
    fainter = dict(options, semi_contrast=0.3, semi_albedo_min=0.01)
    _, water = synthesize(_uniform_surface("water"), np.random.default_rng(4), margin=16, options=options)
    _, water_faint = synthesize(_uniform_surface("water"), np.random.default_rng(4), margin=16, options=fainter)
    assert np.all((water_faint == SEMI)[water == SEMI]) and (water_faint == SEMI).mean() > (water == SEMI).mean()
    desert = _uniform_surface("desert", 2)  # bright land (unshadowed): the absolute threshold still rules
    assert np.all(semi_threshold(desert, contrast=0.3, floor=0.01) == SEMI_ALBEDO)
    assert semi_threshold(_uniform_surface("water", 2), contrast=0.3, floor=0.01).max() < 0.011


def test_set_labels_allow_both_classes_only_near_a_visibility_threshold():
    background = _uniform_surface("water", 128)
    options = {"kinds": ["haze", "cumulus"], "nodata": True}
    dn, label = synthesize(background, np.random.default_rng(6), margin=16, options=options)
    dn_sets, label_sets, exact = synthesize_sets(background, np.random.default_rng(6), margin=16, options=options)
    np.testing.assert_array_equal(dn, dn_sets)  # the same draws: the same image and label
    np.testing.assert_array_equal(label, label_sets)
    np.testing.assert_array_equal(exact.argmax(axis=0) + 1, label)  # tolerance 0: one class per pixel
    assert np.all(exact.sum(axis=0) == 1)

    _, _, sets = synthesize_sets(background, np.random.default_rng(6), margin=16, options={**options, "layer_tolerance": 0.4, "shadow_tolerance": 0.4})
    assert np.all(sets[label - 1, *np.indices(label.shape)])  # the exact label is always allowed
    both = sets.sum(axis=0) > 1
    assert 0.01 < both.mean() < 0.5
    assert not both[label == 4].any() and not both[label == 5].any()  # cloud and nodata stay exact
    assert np.all(sets[2][both] | (sets[0][both] & sets[1][both]))  # either "faint layer?" or "faint shadow?"
    assert not sets[3][label != 4].any()  # the semi/cloud boundary is never relaxed


def test_shadows_come_only_from_clouds_in_view_when_off_crop_casting_is_off(monkeypatch):
    from openeo_cloudmask.models.training import synthetic

    def one_cloud_in_the_margin(rng, shape, kind):  # a thick square cloud left of the 64 px crop
        tau = np.zeros(shape, np.float32)
        tau[40:56, 4:14] = 30.0
        return tau

    monkeypatch.setattr(synthetic, "cloud_layer", one_cloud_in_the_margin)
    background = _uniform_surface("vegetation", 64)
    options = {"kinds": ["cumulus"], "nodata": False, "shadow_px": 16}
    for azimuth_seed in range(20):  # draws until the sun puts the shadow into the crop
        _, label = synthesize(background, np.random.default_rng(azimuth_seed), margin=16, options=options)
        if (label == 2).any():
            break
    assert (label == 2).any() and not (label >= 3).any()  # a shadow whose cloud is out of view
    _, label = synthesize(background, np.random.default_rng(azimuth_seed), margin=16, options={**options, "offcrop_shadows": False})
    assert np.all(label == 1)


def test_water_diffuse_makes_shadows_over_water_fainter_and_leaves_land_alone():
    options = {"kinds": ["cumulus"], "nodata": False}
    skylit = dict(options, water_diffuse=0.5)
    dn, label = synthesize(_uniform_surface("water"), np.random.default_rng(3), margin=16, options=options)
    dn_sky, label_sky = synthesize(_uniform_surface("water"), np.random.default_rng(3), margin=16, options=skylit)
    shadow = label == 2
    assert shadow.any() and np.all(dn_sky[:, shadow] >= dn[:, shadow])  # shadowed water keeps its skylight
    assert (label_sky == 2).sum() < shadow.sum() and np.all(shadow[label_sky == 2])  # only the darkest stay shadow
    land = _uniform_surface("vegetation")
    for a, b in zip(synthesize(land, np.random.default_rng(3), 16, options), synthesize(land, np.random.default_rng(3), 16, skylit)):
        np.testing.assert_array_equal(a, b)


def test_fully_lit_layers_add_up_to_the_one_layer_of_their_summed_thickness():
    from openeo_cloudmask.models.training.synthetic import ALBEDO_TAU, _shaded_layers

    rng = np.random.default_rng(0)
    surface = _uniform_surface("vegetation", 24)
    crop = (slice(4, 28), slice(4, 28))
    fields = [np.abs(rng.normal(0, 8, (32, 32))).astype(np.float32) for _ in range(3)]
    layers = [(d, f, f[crop]) for d, f in zip((3.0, 12.0, 7.0), fields)]
    ones = np.ones(4, np.float32)
    lit = _shaded_layers(surface, layers, 0.3, crop, ones, np.ones((24, 24), np.float32), ones, "reflectance")
    total = sum(f[crop] for f in fields)
    a = (total / (total + ALBEDO_TAU))[None]
    np.testing.assert_allclose(lit, a + (1 - a) ** 2 * surface / (1 - a * surface), rtol=1e-5)


def test_a_higher_layer_shades_a_lower_one_along_the_sun_azimuth_only():
    from openeo_cloudmask.models.training.synthetic import _shaded_layers

    surface = _uniform_surface("water", 24)
    crop = (slice(4, 28), slice(4, 28))
    low = np.full((32, 32), 10.0, np.float32)
    high = np.zeros((32, 32), np.float32)
    high[10:14, 10:14] = 40.0
    diffuse, flat, grey = np.array([0.4, 0.3, 0.25, 0.15], np.float32), np.ones((24, 24), np.float32), np.ones(4, np.float32)
    # the high layer's shadow on the low one lies (11 - 5) px along the azimuth (0: +x) from the blob
    layers = [(5.0, low, low[crop]), (11.0, high, high[crop])]
    image = _shaded_layers(surface, layers, 0.0, crop, diffuse, flat, grey, "reflectance")
    alone = _shaded_layers(surface, layers[:1], 0.0, crop, diffuse, flat, grey, "reflectance")
    shaded = np.zeros((24, 24), bool)
    shaded[6:10, 12:16] = True  # canvas rows 10..13, columns 16..19, in crop coordinates
    under_blob = np.zeros((24, 24), bool)
    under_blob[6:10, 6:10] = True
    free = ~shaded & ~under_blob
    assert np.all(image[:, shaded] < 0.5 * alone[:, shaded])  # a low cloud in the high one's shadow is dark grey
    np.testing.assert_allclose(image[:, free], alone[:, free], rtol=1e-6)  # lit everywhere else: only the shading is new


def test_total_transmission_lets_thin_cloud_cast_only_faint_shadows():
    options = {"kinds": ["cirrus"], "nodata": False, "shadow_px": 10, "path_radiance_probability": 0.0}
    land = _uniform_surface("vegetation", 96)
    dn, label = synthesize(land, np.random.default_rng(4), margin=16, options=options)
    dn_total, label_total = synthesize(land, np.random.default_rng(4), margin=16, options=dict(options, shadow_transmission="total"))
    assert (label == 2).sum() > 100  # exp(-tau): cirrus of tau 0.6-6 casts labelled shadows
    assert (label_total == 2).sum() < 0.2 * (label == 2).sum() and np.all(label[label_total == 2] == 2)
    assert np.all(dn_total >= dn - 1)  # the same draws, only the shadowed surface is brighter
    np.testing.assert_array_equal(label_total == 4, label == 4)  # opaque cloud does not change (semi's visibility may)
    with pytest.raises(ValueError, match="unknown shadow_transmission 'diffuse'; use one of"):
        synthesize(land, np.random.default_rng(4), margin=16, options=dict(options, shadow_transmission="diffuse"))


def test_sea_background_is_dark_water_with_a_coast_sometimes():
    from openeo_cloudmask.models.training.synthetic import sea_background

    seas = [sea_background(np.random.default_rng(seed), 64) for seed in range(20)]
    assert all(s.shape == (4, 64, 64) and s.dtype == np.float32 for s in seas)
    water = [s for s in seas if s[3].max() < s[0].min()]  # NIR below blue everywhere: no land in the crop
    assert 8 <= len(water) < 20
    assert all(w[0].mean() < 0.1 and np.all(np.diff(w.mean(axis=(1, 2))) < 0) for w in water)
    np.testing.assert_array_equal(seas[3], sea_background(np.random.default_rng(3), 64))


def test_shift_is_roll_without_wrap_around():
    from openeo_cloudmask.models.training.synthetic import shift

    field = np.arange(1.0, 21.0).reshape(4, 5)
    for dy, dx in [(1, 2), (-1, -2), (0, 0), (3, -4), (4, 0)]:
        moved = shift(field, dy, dx)
        kept = moved != 0
        np.testing.assert_array_equal(moved[kept], np.roll(field, (dy, dx), axis=(0, 1))[kept])
        assert kept.sum() == max(0, 4 - abs(dy)) * max(0, 5 - abs(dx))


def test_unknown_relief_is_refused():
    with pytest.raises(ValueError, match="unknown relief 'shade'; use one of"):
        synthesize(_uniform_surface("water", 32), np.random.default_rng(0), margin=8, options={"relief": "shade"})


@pytest.mark.parametrize("kind", CLOUD_KINDS)
def test_every_cloud_kind_builds(kind):
    rng = np.random.default_rng(5)
    dn, label = synthesize(procedural_background(rng, 64), rng, margin=16, options={"kinds": [kind], "nodata": False})
    assert dn.shape == (4, 64, 64)
    assert 5 not in label and set(np.unique(label)) <= {1, 2, 3, 4}


def test_fractal_noise_is_standardised():
    field = fractal_noise(np.random.default_rng(0), (64, 96), beta=3.0, stretch=4.0, angle=0.5)
    assert field.shape == (64, 96)
    assert abs(field.mean()) < 1e-5 and abs(field.std() - 1) < 1e-3


def test_teacher_mapping_uses_set_labels():
    probs = np.zeros((3, 2, 2), np.float32)
    probs[0, 0, 0] = probs[1, 0, 1] = probs[2, 1, 0] = probs[1, 1, 1] = 0.9
    probs += 0.05
    nodata = np.array([[False, False], [False, True]])
    member, weight = membership_targets(probs, nodata)
    assert member[:, 0, 0].tolist() == [True, False, False, False, False]  # clear
    assert member[:, 0, 1].tolist() == [False, False, True, True, False]  # cloud: semi or opaque
    assert member[:, 1, 0].tolist() == [False, True, False, False, False]  # shadow
    assert member[:, 1, 1].tolist() == [False, False, False, False, True]  # nodata
    assert weight[0, 0] == pytest.approx(0.95**2) and weight[1, 1] == 1.0
    codes = ukis_classes_as_ours(np.array([[0, 1], [2, 1]]), nodata)
    assert codes.tolist() == [[1, 4], [2, 5]]


def test_photometric_copies_are_scaled_within_range_and_relabelled_by_the_teacher_on_the_copy():
    pytest.importorskip("ukis_csmask")
    from openeo_cloudmask.models.training import train
    from openeo_cloudmask.models.training.teacher import teacher_probabilities

    dn, _ = demo_scene(seed=2)  # has a nodata border
    scene = scenes.Scene(name="demo", file="demo", level="L2A", dn=dn,
                         s2cloudless_probability=np.full(dn.shape[1:], 0.9, np.float32))
    config = dict(train.DEFAULT_CONFIG, teacher_copies=2, teacher_copy_gain=[0.5, 0.6], teacher_copy_band_jitter=0.1)
    (copies,) = train.photometric_copies([scene], config, log=lambda message: None)
    assert len(copies) == 2
    valid = ~scene.nodata
    for copy, probs in copies:
        assert np.all(copy.dn[:, scene.nodata] == 0) and copy.nodata.sum() == scene.nodata.sum()
        ratio = copy.dn[:, valid] / dn[:, valid]
        assert np.all((ratio > 0.5 * 0.9 - 1e-3) & (ratio < 0.6 * 1.1 + 1e-3))
        assert np.allclose(ratio, ratio[:, :1], atol=2e-3)  # one factor per band (up to the clip at DN 1)
        assert copy.s2cloudless_probability is None  # belonged to the original image
        np.testing.assert_array_equal(probs, teacher_probabilities(copy))
    assert not np.array_equal(copies[0][0].dn, copies[1][0].dn)
    again = train.photometric_copies([scene], config, log=lambda message: None)
    np.testing.assert_array_equal(again[0][1][0].dn, copies[1][0].dn)  # seeded
    assert train.photometric_copies([scene], dict(config, teacher_copies=0)) == []
    l1c = dict(vars(scene), level="L1C")
    assert train.photometric_copies([scenes.Scene(**l1c)], config, log=lambda message: None) == [[]]


def test_finetune_phase_is_a_second_run_from_the_first_ones_weights():
    from openeo_cloudmask.models.training import train

    config = dict(train.DEFAULT_CONFIG, max_steps=4000, lr=3e-3, finetune={"steps": 1000, "lr": 3e-4, "teacher_copies": 6})
    tuned = train.finetune_config(config, "/tmp/first.pt")
    assert (tuned["max_steps"], tuned["lr"], tuned["teacher_copies"], tuned["init_from"]) == (1000, 3e-4, 6, "/tmp/first.pt")
    assert tuned["finetune"] is None and tuned["seed"] == config["seed"] and "steps" not in tuned
    assert config["max_steps"] == 4000 and config["lr"] == 3e-3  # the first phase's config is left alone


def test_unknown_config_override_is_refused_with_the_valid_keys(monkeypatch, tmp_path, capsys):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))  # a data folder that exists, so the override is checked
    with pytest.raises(SystemExit) as info:
        train.main(["--set", "synthetic_fractoin=0.3", "--out", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown key 'synthetic_fractoin'" in err and "synthetic_fraction" in err


def test_config_override_that_is_not_json_is_refused_with_a_hint(monkeypatch, tmp_path, capsys):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as info:
        train.main(["--set", "synthetic_relief=reflectance", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert """--set 'synthetic_relief="reflectance"'""" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ('background_sources={"sea": 0.5, "ocean": 0.5}', "background_sources: unknown source(s) ['ocean']; use wright_clear"),
        ('synthetic_shadow_transmission="diffuse"', "synthetic_shadow_transmission: unknown value 'diffuse'; use one of direct, total"),
        ('synthetic_relief="shade"', "synthetic_relief: unknown value 'shade'"),
        ('init_from="/no/such/weights.pt"', "init_from: no checkpoint at /no/such/weights.pt"),
        ('teacher_targets="probabilities"', "teacher_targets: unknown value 'probabilities'; use one of hard, soft"),
        ("teacher_copy_gain=[0, 1.2]", "teacher_copy_gain: [0, 1.2] is not a range [low, high] with 0 < low <= high"),
        ("teacher_copy_share=1.5", "teacher_copy_share: 1.5 is not a share between 0 and 1"),
        ('finetune={"lr": 0.001}', "finetune: {'lr': 0.001} must be {\"steps\": N, KEY: value, ...}"),
        ('finetune={"steps": 10, "learning_rate": 0.001}', "unknown key(s) ['learning_rate']"),
        ('finetune={"steps": 10, "max_steps": 5}', "['max_steps'] are set by the phase itself"),
        ('finetune={"steps": 10, "teacher_copy_share": 2}', "teacher_copy_share: 2 is not a share between 0 and 1"),
    ],
)
def test_bad_generator_choices_are_refused_before_any_work(monkeypatch, tmp_path, capsys, override, message):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))  # exists but is empty: loading data would fail differently
    with pytest.raises(SystemExit) as info:
        train.main(["--set", override, "--out", str(tmp_path)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_folder_gives_one_clear_line(monkeypatch, tmp_path):
    missing = tmp_path / "no_such_folder"
    monkeypatch.setenv(scenes.DATA_ENV, str(missing))
    with pytest.raises(SystemExit) as info:
        scenes.shared_data_dir()
    message = str(info.value)
    assert str(missing) in message and scenes.DATA_ENV in message and "shared/" in message
    assert "\n" not in message


def test_scripts_stop_on_missing_data_before_work(monkeypatch, tmp_path):
    from openeo_cloudmask.models.training import evaluate, train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path / "absent"))
    for main in (train.main, evaluate.main):
        with pytest.raises(SystemExit, match="absent"):
            main([])


def test_split_keeps_held_out_scenes_out_of_training():
    training = set(scenes.TEACHER_TRAIN) | set(scenes.BACKGROUND_TRAIN)
    assert not training & set(scenes.HELD_OUT)
    assert not training & set(scenes.SYNTHETIC_EVAL_BACKGROUNDS)
    assert "s2cloudless_testscene.nc" in scenes.HELD_OUT  # CC BY-SA 4.0: evaluation only
    assert all(name.startswith("cairo_kaggle_weaklabel") is False for name in training)


@needs_shared_data
def test_scenes_load_bands_by_name():
    (scene,) = scenes.load_file("spyndex_s2_10m.nc")
    assert scene.dn.shape == (4, 300, 300) and scene.dn.dtype == np.float32
    stack = scenes.load_file("eolearn_testpatch_slovenia.nc", dates=[0, 2])
    assert [s.name for s in stack] == ["eolearn_testpatch_slovenia_t0", "eolearn_testpatch_slovenia_t2"]
    assert stack[0].level == "L1C" and stack[0].swir.shape == (2, 101, 100)
    assert stack[0].s2cloudless_probability.shape == (101, 100)


@pytest.mark.parametrize("head, hidden", [("plain", 0), ("pixel", 0), ("pixel", 4), ("block", 0), ("block", 16)])
def test_network_exports_to_onnx_matching_torch(tmp_path, head, hidden):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from openeo_cloudmask.models.training.export import check_against_torch, export_onnx
    from openeo_cloudmask.models.training.network import CloudMaskNet, measure_receptive_field

    torch.manual_seed(0)
    model = CloudMaskNet(widths=(8, 8, 8, 8), head=head, head_hidden=hidden).eval()
    model.make_missing_a_rule()
    path = export_onnx(model, tmp_path / "net.onnx", size=64)
    assert check_against_torch(model, path) < 1e-4
    assert model.size_multiple == 32
    assert measure_receptive_field(model, size=512) >= 128
    dn = torch.full((1, 4, 64, 64), 300.0)
    dn[..., :8, :8] = 0
    dn[:, 1:, 40:48, 40:48] = 0  # the darkest valid pixels: 1 DN in B02 alone
    dn[:, 0, 40:48, 40:48] = 1
    with torch.no_grad():
        codes = model(dn).argmax(dim=1)[0] + 1
    missing = torch.zeros(64, 64, dtype=torch.bool)
    missing[:8, :8] = True
    assert torch.equal(codes == 5, missing)  # missing exactly where every band is 0


def test_pixel_head_tells_a_pixel_from_its_block_neighbours():
    torch = pytest.importorskip("torch")
    from openeo_cloudmask.models.training.network import CloudMaskNet

    torch.manual_seed(0)
    dn = torch.full((1, 4, 64, 64), 800.0)
    brighter = dn.clone()
    brighter[..., 33, 33] = 6000.0  # one pixel of the 4x4 block at rows/cols 32..35
    for head, moves_alone in (("plain", False), ("pixel", True)):
        model = CloudMaskNet(widths=(8, 8, 8, 8), head=head).eval()
        with torch.no_grad():
            change = (model.logits(brighter) - model.logits(dn)).abs().sum(dim=1)[0]
        # the plain head shifts a whole block together (one quarter-resolution cell); the pixel head the pixel alone
        block = change[32:36, 32:36].clone()
        own = float(block[1, 1])
        block[1, 1] = 0
        ratio = own / float(block.max())
        assert (ratio > 10) if moves_alone else (ratio < 2), (head, ratio)


def test_set_loss_prefers_allowed_classes():
    torch = pytest.importorskip("torch")
    from openeo_cloudmask.models.training.train import set_loss

    member = torch.zeros(1, 5, 1, 1, dtype=torch.bool)
    member[0, 2:4] = True  # teacher cloud: semi-transparent or opaque
    weight = torch.ones(1, 1, 1)
    good = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0]).view(1, 5, 1, 1)
    also_good = torch.tensor([0.0, 0.0, 0.0, 3.0, 0.0]).view(1, 5, 1, 1)
    bad = torch.tensor([3.0, 0.0, 0.0, 0.0, 0.0]).view(1, 5, 1, 1)
    assert float(set_loss(good, member, weight)) == pytest.approx(float(set_loss(also_good, member, weight)))
    assert float(set_loss(bad, member, weight)) > float(set_loss(good, member, weight)) + 1.0



def test_soft_teacher_targets_are_matched_by_the_teachers_own_probabilities():
    """Soft targets, in the teacher's class order: least loss where the student's masses equal the teacher's."""
    torch = pytest.importorskip("torch")
    from openeo_cloudmask.models.training.train import set_loss

    # teacher (ukis order: clear, cloud, shadow) says clear 0.3, cloud 0.6, shadow 0.1; a second pixel is nodata
    probs = np.zeros((3, 1, 2), np.float32)
    probs[:, 0, 0] = [0.3, 0.6, 0.1]
    probs[0, 0, 1] = 1.0
    nodata = np.array([[False, True]])
    member, _ = membership_targets(probs, nodata, power=0)
    soft = probs.copy()
    soft[:, nodata] = 0.0
    member, soft, weight = torch.from_numpy(member[None]), torch.from_numpy(soft[None]), torch.ones(1, 1, 2)

    def logits(clear, shadow, cloud):  # cloud mass split evenly between semi and opaque; nodata pixel sure of 5
        first = torch.log(torch.tensor([clear, shadow, cloud / 2, cloud / 2, 1e-9]))
        second = torch.tensor([0.0, 0.0, 0.0, 0.0, 20.0])
        return torch.stack([first, second], dim=1).view(1, 5, 1, 2)

    matched = float(set_loss(logits(0.3, 0.1, 0.6), member, weight, soft))
    for other in [(0.05, 0.05, 0.9), (0.6, 0.1, 0.3), (0.3, 0.4, 0.3), (0.3, 0.6, 0.1)]:
        assert float(set_loss(logits(*other), member, weight, soft)) > matched + 0.01
    entropy = -(0.3 * math.log(0.3) + 0.1 * math.log(0.1) + 0.6 * math.log(0.6))
    assert matched == pytest.approx(entropy / 2, abs=1e-3)  # the nodata pixel keeps its hard target {5}: ~0 loss
    # a sure teacher: the soft loss is the hard set-label loss of its winning class
    sure = torch.zeros_like(soft)
    sure[0, 1, 0, 0] = 1.0  # cloud
    for student in [(0.2, 0.3, 0.5), (0.7, 0.2, 0.1)]:
        assert float(set_loss(logits(*student), member, weight, sure)) == pytest.approx(
            float(set_loss(logits(*student), member, weight)), abs=1e-6
        )

def _shifted_tiny_model(directory, cloud_bias: float):
    """The tiny model with another cloud logit bias (a second, different ensemble member)."""
    import hashlib
    import json

    import onnx
    from onnx import numpy_helper

    from tiny_model import TINY_MODEL_ID, build_tiny_model

    build_tiny_model(directory)
    onnx_path, card_path = Path(directory, f"{TINY_MODEL_ID}.onnx"), Path(directory, f"{TINY_MODEL_ID}.json")
    graph = onnx.load(str(onnx_path))
    for init in graph.graph.initializer:
        if init.name == "b":
            bias = numpy_helper.to_array(init).copy()
            bias[3] = cloud_bias
            init.CopyFrom(numpy_helper.from_array(bias, "b"))
    onnx.save(graph, str(onnx_path))
    card = json.loads(card_path.read_text())
    card["onnx_sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    return directory


def test_distillation_targets_are_the_members_mean(tmp_path):
    pytest.importorskip("onnx")
    from openeo_cloudmask.models.training.distill import Ensemble
    from tiny_model import TINY_MODEL_ID, build_tiny_model

    first = build_tiny_model(tmp_path / "a")
    second = _shifted_tiny_model(tmp_path / "b", cloud_bias=-10.0)
    dn = np.full((2, 4, 32, 32), 4000.0, np.float32)  # mid-bright: the members disagree on cloud
    pair = Ensemble([first, second], model_id=TINY_MODEL_ID)
    one, two = (Ensemble([d], model_id=TINY_MODEL_ID).probabilities(dn) for d in (first, second))
    assert not np.allclose(one, two)
    np.testing.assert_allclose(pair.probabilities(dn), (one + two) / 2, rtol=1e-6)
    assert [m["onnx_sha256"] for m in pair.record()] == [m.card["onnx_sha256"] for m in pair.members]


def test_distillation_refuses_a_corrupt_member_naming_the_file(tmp_path):
    pytest.importorskip("onnx")
    from openeo_cloudmask.models.training.distill import Ensemble
    from openeo_cloudmask.udf.cloud_mask import ModelFileError
    from tiny_model import TINY_MODEL_ID, build_tiny_model

    good = build_tiny_model(tmp_path / "good")
    bad = build_tiny_model(tmp_path / "bad")
    onnx_path = Path(bad, f"{TINY_MODEL_ID}.onnx")
    onnx_path.write_bytes(onnx_path.read_bytes()[:-20])
    with pytest.raises(ModelFileError, match="bad/tiny-test.onnx"):
        Ensemble([good, bad], model_id=TINY_MODEL_ID)
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([], model_id=TINY_MODEL_ID)


def test_soft_loss_is_least_where_the_student_matches_the_targets():
    torch = pytest.importorskip("torch")
    from openeo_cloudmask.models.training.distill import soft_loss

    target = torch.tensor([0.1, 0.0, 0.3, 0.6, 0.0]).view(1, 5, 1, 1)
    weight = torch.ones(1, 1, 1)
    matched = torch.log(target.clamp(min=1e-9))
    confident = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0]).view(1, 5, 1, 1)
    assert float(soft_loss(matched, target, weight)) < float(soft_loss(confident, target, weight))
    assert float(soft_loss(matched, target, weight)) == pytest.approx(-(0.1 * np.log(0.1) + 0.3 * np.log(0.3) + 0.6 * np.log(0.6)), rel=1e-4)


def test_compare_offsets_shift_the_decision_and_bad_arguments_are_refused(tmp_path, capsys):
    from openeo_cloudmask.models.training import compare

    probs = np.array([0.5, 0.1, 0.3, 0.05, 0.05], np.float32)[:, None, None] * np.ones((5, 2, 2), np.float32)
    assert np.all(compare.classes(probs) == 1)
    assert np.all(compare.classes(probs, [0, 0, 0.6, 0, 0]) == 3)  # log(0.3) + 0.6 > log(0.5)
    assert np.all(compare.classes(probs, [0, 0, 0.4, 0, 0]) == 1)
    for argv, message in (
        (["--log-offsets", "0,1", str(tmp_path)], "give five numbers"),
        ([str(tmp_path)], "holds no cloudmask-s2-4band.json"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            compare.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err



def test_training_fit_pools_recall_of_each_teacher_class_over_valid_pixels():
    from openeo_cloudmask.models.training import compare

    dn = np.full((4, 2, 4), 500.0, np.float32)
    dn[:, 1, 3] = 0.0  # one nodata pixel: never scored
    scene = scenes.Scene(name="s", file="s.nc", level="L2A", dn=dn)
    teacher = np.array([[1, 1, 4, 4], [4, 4, 2, 5]], np.uint8)
    ours = np.array([[1, 4, 3, 4], [1, 4, 2, 1]], np.uint8)  # semi-transparent (3) counts as the teacher's cloud
    fit = compare.training_fit(lambda dn, level: ours, [(scene, teacher), (scene, teacher)])
    assert fit["recall_of_teacher_class"] == {"clear": 0.5, "cloud_shadow": 1.0, "cloud": 0.75}
    assert fit["agreement"] == round(5 / 7, 4)

def test_best_threshold_f1_scores_the_ranking_whatever_the_calibration():
    from openeo_cloudmask.models.training.compare import best_threshold_f1

    truth = np.array([True] * 6 + [False] * 6)
    p = np.array([0.30, 0.32, 0.34, 0.36, 0.38, 0.40, 0.05, 0.10, 0.15, 0.20, 0.22, 0.24])
    best = best_threshold_f1(truth, p)
    assert best["f1"] == 1.0 and best["threshold"] in (0.25, 0.3)  # perfect ranking, poor calibration
    assert best_threshold_f1(truth, p**0.5)["f1"] == 1.0  # a monotone change keeps it
    mixed = np.array([0.9, 0.1] * 6)
    assert best_threshold_f1(truth, mixed)["f1"] < 1.0


def test_mixed_blocks_marks_the_cells_that_hold_a_class_boundary():
    from openeo_cloudmask.models.training.compare import mixed_blocks

    label = np.ones((9, 8), np.uint8)
    label[:, 6:] = 4  # a boundary inside the second column of 4x4 cells
    mixed = mixed_blocks(label)
    assert mixed[:8, 4:].all() and not mixed[:8, :4].any()
    assert not mixed[8].any()  # the partial bottom row counts as uniform
