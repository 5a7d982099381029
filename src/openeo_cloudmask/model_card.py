"""The model card: a JSON file beside each ``.onnx`` file in ``models/``.

The card is the single source of truth for how a model is fed and read:
which bands in which order, how digital numbers are scaled, which class code
each output channel means, and how large a window must be. The UDF reads the
same JSON with the standard library only (it must stay self-contained); this
pydantic model is what the package, the tests and the training script use to
validate it, and :func:`verify_card_against_onnx` is how a card is checked
against the file it describes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openeo_cloudmask.udf.cloud_mask import CLASS_CODES

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: KappaMask class codes: the engine's table, plus 0, which is never produced for valid input.
KAPPAMASK_CLASSES = {0: "undefined", **CLASS_CODES}


class ModelCardError(ValueError):
    """A card is invalid or does not match its ONNX file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassEntry(_Strict):
    code: int = Field(ge=0, le=255)
    name: str
    description: str = ""


class InputSpec(_Strict):
    name: str = Field(description="ONNX input tensor name, shape (N, C, H, W), float32")
    bands: tuple[str, ...] = Field(min_length=1, description="Sentinel-2 band names in channel order")
    dtype: Literal["float32"] = "float32"
    units: Literal["digital_number"] = "digital_number"
    scale: float = Field(10000.0, description="DN = reflectance * scale")
    offset: float = Field(0.0, description="DN = reflectance * scale + offset; 0 for harmonised data")
    nodata: float = Field(0.0, description="DN value that marks missing data")
    normalisation: str = Field(
        description="What the ONNX graph does to the DN before the network (lives in the graph)"
    )

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, bands: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in bands if b not in S2_BANDS]
        if unknown:
            raise ValueError(f"unknown Sentinel-2 band names {unknown}; use {list(S2_BANDS)}")
        if len(set(bands)) != len(bands):
            raise ValueError(f"duplicate band names in {list(bands)}")
        return bands


class OutputSpec(_Strict):
    name: str = Field(description="ONNX output tensor name, shape (N, K, H, W), softmax probabilities")
    kind: Literal["probabilities"] = "probabilities"
    classes: tuple[ClassEntry, ...] = Field(min_length=2, description="one entry per output channel, in order")
    classes_name: str | None = Field(
        default=None,
        description="optional second ONNX output, shape (N, 1, H, W) uint8: the index into ``classes`` of the most "
        "probable class, first on ties",
    )
    probabilities_switch: str | None = Field(
        default=None,
        description="optional boolean ONNX input, true by default: false skips the softmax (``name`` then comes back "
        "empty), for a caller that wants only ``classes_name``. onnxruntime runs every node of a graph whatever "
        "outputs are asked for, so only a switch saves that work",
    )

    @field_validator("classes")
    @classmethod
    def _kappamask_codes(cls, classes: tuple[ClassEntry, ...]) -> tuple[ClassEntry, ...]:
        for entry in classes:
            expected = KAPPAMASK_CLASSES.get(entry.code)
            if expected is None or expected != entry.name:
                raise ValueError(
                    f"class {entry.code}={entry.name!r} is not a KappaMask class; expected one of {KAPPAMASK_CLASSES}"
                )
            if entry.code == 0:
                raise ValueError("the model must not output the undefined code 0")
        codes = [c.code for c in classes]
        if len(set(codes)) != len(codes):
            raise ValueError(f"duplicate class codes {codes}")
        return classes


class TilingSpec(_Strict):
    receptive_field_px: int = Field(gt=0, description="theoretical receptive field of one output pixel")
    size_multiple: int = Field(gt=0, description="window height and width must be a multiple of this")
    min_tile_size: int = Field(gt=0, description="smallest window the model gives valid output for")
    recommended_window: int = Field(
        gt=0, description="largest window the engine runs in one piece; larger chunks are cut into such windows"
    )
    recommended_overlap: int = Field(
        ge=0,
        description="context the engine keeps on every side a window shares with a neighbour (neighbours share "
        "2 x this), and the halo (apply_neighborhood overlap) of chunked runs; when it covers the receptive field's "
        "reach, every chunking gives bit-identical results",
    )
    recommended_chunk: int = Field(
        512,
        gt=0,
        description="apply_neighborhood size for backends: chunk + 2 x overlap stays within one window and little memory",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "TilingSpec":
        for name in ("min_tile_size", "recommended_window"):
            if getattr(self, name) % self.size_multiple:
                raise ValueError(f"{name} must be a multiple of size_multiple={self.size_multiple}")
        if self.recommended_window < self.min_tile_size:
            raise ValueError("recommended_window must be >= min_tile_size")
        if 2 * self.recommended_overlap < self.receptive_field_px:
            raise ValueError(
                f"recommended_overlap {self.recommended_overlap} cannot cover the receptive field "
                f"({self.receptive_field_px} px wide): chunk borders would change the answer"
            )
        if 2 * self.recommended_overlap >= self.recommended_window:
            raise ValueError("recommended_overlap must be less than half the recommended_window")
        if self.recommended_chunk + 2 * self.recommended_overlap > self.recommended_window:
            raise ValueError("recommended_chunk + 2 x recommended_overlap must fit in the recommended_window")
        return self


class DataSource(_Strict):
    file: str = Field(description="file of the shared Sentinel-2 data folder")
    role: Literal["teacher", "human", "clear", "background"] = Field(description="what labels the file gives")
    licence: str
    attribution: str = ""


class TrainingSpec(_Strict):
    script: str = Field(description="command that retrains this model")
    seed: int
    data: tuple[DataSource, ...]
    teacher: str = Field(description="teacher model(s) and how their classes map onto ours")
    opaque_rule: str = Field(description="how real cloud pixels are told semi-transparent (3) or opaque (4)")
    human_labels: str = Field(description="how people's cloud labels become targets")
    config: dict = Field(description="the full training configuration, as recorded by the training run")


class ModelCard(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str
    description: str
    onnx_file: str = Field(description="file name of the ONNX model, relative to the card")
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str
    processing_levels: tuple[Literal["L1C", "L2A"], ...] = ("L1C", "L2A")
    resolution_m: float = Field(10.0, gt=0, description="ground sampling distance the model was trained for")
    input: InputSpec
    output: OutputSpec
    tiling: TilingSpec
    training: TrainingSpec
    metrics: dict = Field(default_factory=dict, description="written by the evaluation script")

    @property
    def class_codes(self) -> tuple[int, ...]:
        return tuple(c.code for c in self.output.classes)


def load_model_card(path: str | Path) -> ModelCard:
    """Read and validate a card; errors name the file and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelCardError(f"model card {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {path} is not valid JSON: {exc}") from None
    try:
        return ModelCard.model_validate(raw)
    except ValueError as exc:
        raise ModelCardError(f"model card {path} is invalid:\n{exc}") from None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_card_against_onnx(card_path: str | Path) -> ModelCard:
    """Check a card: its schema (here), then the engine's own card-against-ONNX check (``check_model``: the file's
    sha256, the input bands, the output classes), the one the engine runs on every load.

    Raises :class:`ModelCardError` naming the file and the mismatch.
    """
    import onnxruntime as ort

    from openeo_cloudmask.udf import cloud_mask as engine

    card_path = Path(card_path)
    card = load_model_card(card_path)
    onnx_path = card_path.parent / card.onnx_file
    if not onnx_path.is_file():
        raise ModelCardError(f"{card_path}: ONNX file {onnx_path} is missing")
    raw, data = json.loads(card_path.read_text()), onnx_path.read_bytes()
    try:
        engine.check_model(raw, onnx_bytes=data, where=str(onnx_path),
                           fix="retrain/re-export, or rerun the evaluation script to refresh the card")
        try:
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for corrupt files
            raise ModelCardError(f"{onnx_path}: onnxruntime cannot load it: {exc}") from None
        engine.check_model(raw, session=session, where=str(onnx_path))
    except engine.ModelFileError as exc:
        raise ModelCardError(str(exc)) from None
    return card
