"""The shipped model and its card: the card validates, matches the ONNX file, and mismatches fail clearly."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openeo_cloudmask.model_card import ModelCardError, load_model_card, sha256_of, verify_card_against_onnx

MODELS = Path(__file__).resolve().parent.parent / "models"
CARD = MODELS / "cloudmask-s2-4band.json"
ONNX = MODELS / "cloudmask-s2-4band.onnx"


@pytest.fixture()
def model_copy(tmp_path) -> Path:
    """A copy of the card and ONNX file that a test may break."""
    shutil.copy(CARD, tmp_path / CARD.name)
    shutil.copy(ONNX, tmp_path / ONNX.name)
    return tmp_path / CARD.name


def _edit(card_path: Path, change) -> None:
    raw = json.loads(card_path.read_text())
    change(raw)
    card_path.write_text(json.dumps(raw))


def test_shipped_card_matches_onnx():
    card = verify_card_against_onnx(CARD)
    assert card.id == "cloudmask-s2-4band"
    assert card.input.name == "dn" and card.input.bands == ("B02", "B03", "B04", "B08")
    assert (card.input.scale, card.input.offset, card.input.nodata) == (10000.0, 0.0, 0.0)
    assert card.output.name == "probabilities"
    assert [(c.code, c.name) for c in card.output.classes] == [
        (1, "clear"), (2, "cloud_shadow"), (3, "semi_transparent_cloud"), (4, "cloud"), (5, "missing")
    ]
    assert card.tiling.receptive_field_px >= 128
    assert card.tiling.recommended_overlap >= 64
    assert card.training.script.startswith("python -m openeo_cloudmask.models.training.train")
    for source in card.training.data:
        assert source.licence
    assert "Copernicus Sentinel" in card.licence


def test_onnx_is_small_and_dynamic():
    import onnxruntime as ort

    assert ONNX.stat().st_size < 10e6
    session = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    (inp,), (out, classes) = session.get_inputs(), session.get_outputs()
    assert inp.type == "tensor(float)" and out.type == "tensor(float)" and classes.type == "tensor(uint8)"
    assert inp.shape[1] == 4 and out.shape[1] == 5 and classes.shape[1] == 1
    assert all(isinstance(d, str) for d in (inp.shape[0], inp.shape[2], inp.shape[3]))


def test_probabilities_sum_to_one_and_nodata_is_missing():
    import onnxruntime as ort

    session = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    dn = (rng.random((2, 4, 96, 128)) * 4000 + 50).astype(np.float32)
    dn[1] = 0.0  # a window of nothing but nodata
    probs = session.run(["probabilities"], {"dn": dn})[0]
    assert probs.shape == (2, 5, 96, 128)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # channel 4 = code 5 missing. The network learned it (a few corner pixels may differ); the engine forces 5
    # wherever the input is nodata, so this checks the model, not the product.
    assert np.mean(np.argmax(probs[1], axis=0) == 4) > 0.999


def test_card_records_evaluation_metrics():
    card = load_model_card(CARD)
    for key in ("human_labels", "weak_labels", "clear_scenes", "opaque_share", "synthetic", "targets"):
        assert key in card.metrics, f"{CARD}: metrics lack {key!r}; rerun the evaluation script"


def test_hash_mismatch_names_the_file(model_copy):
    _edit(model_copy, lambda raw: raw.update(onnx_sha256="0" * 64))
    with pytest.raises(ModelCardError, match="cloudmask-s2-4band.onnx.*does not match"):
        verify_card_against_onnx(model_copy)


def test_corrupt_onnx_names_the_file(model_copy):
    onnx_path = model_copy.parent / ONNX.name
    onnx_path.write_bytes(b"this is not an onnx model")
    _edit(model_copy, lambda raw: raw.update(onnx_sha256=sha256_of(onnx_path)))
    with pytest.raises(ModelCardError, match="cloudmask-s2-4band.onnx.*cannot load"):
        verify_card_against_onnx(model_copy)


def test_card_with_other_bands_is_rejected(model_copy):
    _edit(model_copy, lambda raw: raw["input"].update(bands=["B02", "B03", "B04"]))
    with pytest.raises(ModelCardError, match="cloudmask-s2-4band.onnx.*does not take the card's 3 bands"):
        verify_card_against_onnx(model_copy)


def test_card_with_other_classes_is_rejected(model_copy):
    _edit(model_copy, lambda raw: raw["output"].update(classes=raw["output"]["classes"][:4]))
    with pytest.raises(ModelCardError, match="cloudmask-s2-4band.onnx.*does not give the card's classes"):
        verify_card_against_onnx(model_copy)


def test_missing_onnx_file_is_named(model_copy):
    (model_copy.parent / ONNX.name).unlink()
    with pytest.raises(ModelCardError, match="missing"):
        verify_card_against_onnx(model_copy)


def test_invalid_card_names_the_file(model_copy):
    _edit(model_copy, lambda raw: raw["tiling"].update(recommended_window=500))
    with pytest.raises(ModelCardError, match=str(model_copy.name)):
        load_model_card(model_copy)


def test_overlap_that_cannot_cover_the_receptive_field_is_rejected(model_copy):
    _edit(model_copy, lambda raw: raw["tiling"].update(recommended_overlap=128, recommended_chunk=512))
    with pytest.raises(ModelCardError, match="recommended_overlap 128 cannot cover the receptive field"):
        load_model_card(model_copy)


def test_card_naming_a_softmax_switch_the_onnx_lacks_is_rejected(model_copy):
    _edit(model_copy, lambda raw: raw["output"].update(probabilities_switch="skip_softmax"))
    with pytest.raises(ModelCardError, match="no input 'skip_softmax' with a default"):
        verify_card_against_onnx(model_copy)


def test_card_naming_a_class_output_the_onnx_lacks_is_rejected(model_copy):
    _edit(model_copy, lambda raw: raw["output"].update(classes_name="labels"))
    with pytest.raises(ModelCardError, match="class-index output 'labels'"):
        verify_card_against_onnx(model_copy)
    from openeo_cloudmask.udf import cloud_mask as engine

    with pytest.raises(engine.ModelFileError, match="class-index output 'labels'"):
        engine.load_model(model_copy.stem, str(model_copy.parent))
