# /// script
# requires-python = ">=3.9"
# dependencies = ["numpy", "xarray", "onnxruntime"]
# ///
"""Sentinel-2 cloud and cloud-shadow mask: an openEO UDF, and the engine behind every other door.

An openEO backend runs this file chunk by chunk inside ``apply_neighborhood``;
the installed package (``openeo_cloudmask.udf.cloud_mask``), the registered
``cloud_mask`` process and the CLI import the very same functions. It depends on
the standard library, numpy, xarray and onnxruntime only.

Input: a cube with dimensions ``bands``, ``y`` and ``x`` (and optionally ``t``),
in any order, holding Sentinel-2 digital numbers (reflectance x 10000) as any
integer or float dtype. Band labels are Sentinel-2 names (``B02`` ... ``B12``,
``B8A``); extra bands such as ``SCL`` are ignored. A pixel that is 0 or NaN in
any band the model needs is *missing* and gets class 5; a chunk with nothing
but missing pixels returns 5 without running the model.

Output (``context["output"]``):

- ``"classes"`` (default): one band ``cloud_mask`` with KappaMask codes
  1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud, 5 missing;
- ``"probabilities"``: one band per class, ``prob_<class name>``, 0..1;
- ``"cloud_detection"``: bands ``cloud`` (semi-transparent + opaque cloud) and
  ``shadow``, 0..1, NaN where the input is missing, as in the openEO
  ``cloud_detection`` proposal.

Context keys (an unknown key is an error that lists these):

- ``processing_level``: ``"L2A"`` (default) or ``"L1C"``, the level of the cube.
- ``radiometric_offset``: the offset baked into the digital numbers you pass,
  subtracted before masking. ``0`` (default) is right for CDSE's openEO
  collections, which deliver harmonised values (processing baseline 04.00's
  +1000 ``BOA_ADD_OFFSET`` already removed). Use ``1000`` for raw baseline
  >= 04.00 products read straight from SAFE/COG files.
- ``model``: model id, a card ``<id>.json`` beside ``<id>.onnx`` (default
  ``"cloudmask-s2-4band"``).
- ``model_dir``: directory holding the model, a ``file://`` URL, or ``None``
  (default) to search the ``udf-dependency-archives`` folder
  (``./cloudmask_deps``), ``models/`` beside this file and the installed
  package. HTTP URLs are refused: nothing downloads during masking; give the
  archive to the backend through the ``udf-dependency-archives`` job option.
- ``output``: ``"classes"`` (default), ``"probabilities"`` or ``"cloud_detection"``.
- ``buffer_m``: dilate cloud, semi-transparent cloud and shadow by this many
  metres (default 0), as users do with SCL masks.
- ``pixel_size_m``: ground sampling distance, for ``buffer_m``. Default: taken
  from the ``x`` coordinate spacing when it looks like metres, else 10.
- ``window_size`` / ``window_overlap``: the engine's inner tiling, in pixels:
  the largest window one ONNX call sees, and the context each window keeps on
  every side it shares with a neighbour (neighbours share twice that).
  Default: the model card's ``recommended_window`` and ``recommended_overlap``.

The contract every door asks for instead of restating it: :func:`parse_context`
returns a frozen :class:`Options` that knows the output's dtype and band
names, the halo a chunk needs for a pixel size and the default chunk edge (the
card's ``recommended_chunk``); every error carries the offending ``key``.

Traps: the result of a chunk's outermost ``window_overlap`` pixels is only as
good as the context the chunk carries, so run this in ``apply_neighborhood``
with an ``overlap`` of at least ``Options.halo`` (the card's
``recommended_overlap`` plus the buffer radius). Then every chunking of a
scene gives bit-identical results (``predict``). Values must be digital
numbers: byte images, negative values and reflectance 0..1 are refused.
onnxruntime's threads: ``OPENEO_CLOUDMASK_ORT_THREADS``, else a Dask worker's
thread count, else every core (:func:`default_threads`).
"""

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = [
    # openEO UDF entry points
    "apply_datacube", "apply_metadata",
    # the contract: options, output, model, errors
    "Options", "parse_context", "output_band_names", "metric_pixel_size", "pixel_size_from_coords",
    "CloudMaskModel", "load_model", "describe_model", "resolve_model_dir", "model_search_dirs", "default_threads",
    "CloudMaskError", "InvalidContextError", "InvalidInputError", "ModelFileError",
    # the engine
    "mask_cube", "mask_array", "check_cube", "check_tiling", "check_values", "check_model", "predict", "tile_windows",
    "window_cores", "grid_phase", "argmax_classes", "buffer_classes",
    # constants
    "DEFAULT_MODEL", "CLASS_CODES", "CLEAR", "SHADOW", "SEMI", "CLOUD", "MISSING", "OUTPUT_KINDS",
    "CONTEXT_DEFAULTS", "ARCHIVE_FOLDER", "THREADS_ENV", "METRIC_PIXEL_RANGE_M", "SESSION_LOADS", "MASK_CALLS",
    "ONNX_DEPS_FOLDER", "ONNX_DEPS_ARCHIVE", "EMBEDDED_MODELS",
]

_log = logging.getLogger("openeo_cloudmask")

DEFAULT_MODEL = "cloudmask-s2-4band"
#: Folder name that ``udf-dependency-archives`` entries unpack into (``<url>#cloudmask_deps``).
ARCHIVE_FOLDER = "cloudmask_deps"
#: Environment variable a backend operator sets to cap onnxruntime's threads per process.
THREADS_ENV = "OPENEO_CLOUDMASK_ORT_THREADS"
#: Folder of the public onnxruntime archive that CDSE's ONNX UDFs use (Python 3.11); put on sys.path when present.
ONNX_DEPS_FOLDER = "onnx_deps"
ONNX_DEPS_ARCHIVE = (
    "https://s3.waw3-1.cloudferro.com/swift/v1/project_dependencies/onnx_deps_python311.zip#" + ONNX_DEPS_FOLDER
)
#: Models carried in this file's own text: model id -> {"card": base64 JSON, "onnx": base64 ONNX}. A self-contained
#: UDP appends one assignment per model (``openeo_cloudmask.release``); used when ``model_dir`` is not given.
EMBEDDED_MODELS = {}

CLASS_CODES = {1: "clear", 2: "cloud_shadow", 3: "semi_transparent_cloud", 4: "cloud", 5: "missing"}
CLEAR, SHADOW, SEMI, CLOUD, MISSING = 1, 2, 3, 4, 5
OUTPUT_KINDS = ("classes", "probabilities", "cloud_detection")

# Bands that exist in only one processing level: finding them contradicts a declared level.
_L2A_ONLY_BANDS = {"SCL", "AOT", "WVP", "sunAzimuthAngles"}
_L1C_ONLY_BANDS = {"B10"}
#: Grid spacings (metres) that a projected Sentinel-2 grid can have; anything else is pixel indices or degrees.
METRIC_PIXEL_RANGE_M = (5.0, 1000.0)


# --------------------------------------------------------------------------- errors


class CloudMaskError(Exception):
    """Base of every error this engine raises.

    ``code`` is an openEO-style error code and ``key`` the offending input: a
    context key (``"buffer_m"``), ``"data"`` for the cube, ``"model"`` for the
    model files, or the environment variable's name. Doors translate ``key``
    into their own parameter names; they never parse the message.
    """

    code = "CloudMaskError"
    key = None

    def __init__(self, message: str, key: str = None):
        super().__init__(message)
        if key is not None:
            self.key = key


class InvalidContextError(CloudMaskError, ValueError):
    code = "InvalidContext"


class InvalidInputError(CloudMaskError, ValueError):
    code = "InvalidInput"
    key = "data"


class ModelFileError(CloudMaskError):
    code = "ModelFileInvalid"
    key = "model"


# --------------------------------------------------------------------------- openEO UDF entry points


def apply_datacube(cube: xr.DataArray, context: dict) -> xr.DataArray:
    """openEO UDF entry point: mask one chunk. See the module docstring."""
    return mask_cube(cube, context)


def apply_metadata(metadata, context: dict):
    """openEO UDF entry point: rename the band labels to the output's."""
    return metadata.rename_labels(dimension="bands", target=parse_context(context).band_names)


# --------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class Options:
    """A validated UDF context (build it with :func:`parse_context`): every rule a door needs, asked, not rewritten.

    The fields are the context keys with their defaults. The methods that take
    ``model`` (a :class:`CloudMaskModel`, from :func:`describe_model` or
    :func:`load_model`) read the card's tiling: the halo a chunk must carry for a
    pixel size, and the chunk edge to cut a scene into.
    """

    processing_level: str = "L2A"
    radiometric_offset: float = 0
    model: str = DEFAULT_MODEL
    model_dir: object = None
    output: str = "classes"
    buffer_m: float = 0
    pixel_size_m: float = None
    window_size: int = None
    window_overlap: int = None

    @property
    def band_names(self) -> list:
        """The output's band labels."""
        return output_band_names(self.output)

    @property
    def dtype(self) -> np.dtype:
        """The output's dtype: uint8 class codes, float32 probabilities."""
        return np.dtype(np.uint8 if self.output == "classes" else np.float32)

    def context(self) -> dict:
        """The options as a UDF context (keys left at their default are left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) != f.default}

    def describe(self) -> "CloudMaskModel":
        """The model's card, without an ONNX session (:func:`describe_model`)."""
        return describe_model(self.model, self.model_dir)

    def pixel_size(self, model: "CloudMaskModel", measured: float = None) -> float:
        """Ground sampling distance in metres: ``pixel_size_m``, else ``measured`` (the grid's), else the card's."""
        return float(self.pixel_size_m or measured or model.resolution_m)

    def buffer_px(self, pixel_size_m: float) -> int:
        """``buffer_m`` in pixels of ``pixel_size_m`` metres: the radius the mask grows by."""
        return int(round(self.buffer_m / pixel_size_m))

    def overlap(self, model: "CloudMaskModel") -> int:
        """Context each engine window keeps on a cut side: ``window_overlap`` or the card's ``recommended_overlap``."""
        return model.overlap if self.window_overlap is None else int(self.window_overlap)

    def halo(self, model: "CloudMaskModel", pixel_size_m: float = None) -> int:
        """Pixels of context a chunk needs on each side for a result identical to a whole-scene run.

        The overlap (the receptive field's reach) plus the buffer radius;
        ``pixel_size_m`` is the grid's spacing if known (see :meth:`pixel_size`).
        """
        return self.overlap(model) + self.buffer_px(self.pixel_size(model, pixel_size_m))

    def chunk(self, model: "CloudMaskModel") -> int:
        """Chunk edge (px, without halo) for a backend's executors (``apply_neighborhood`` size, the UDP): the card's
        ``recommended_chunk``, which keeps each executor's memory small."""
        return model.chunk

    def local_chunk(self, model: "CloudMaskModel", pixel_size_m: float = None) -> int:
        """Chunk edge for doors that cut a scene in this process's own memory (the Dask process, file blocks): the
        largest chunk whose halo still fits one engine window (window - 2 x halo), and never below :meth:`chunk`.
        Fewer, larger chunks repeat less halo work: at 512 px every chunk computes 4x its own pixels."""
        window = model.window if self.window_size is None else int(self.window_size)
        return max(self.chunk(model), window - 2 * self.halo(model, pixel_size_m))


CONTEXT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Options)}


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def parse_context(context) -> Options:
    """Validate a UDF context and fill in defaults: an :class:`Options`. Errors carry the key as ``key``."""
    if isinstance(context, Options):
        return context
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise InvalidContextError(f"context must be a dict, got {type(context).__name__}", key="context")
    unknown = sorted(set(context) - set(CONTEXT_DEFAULTS))
    if unknown:
        raise InvalidContextError(
            f"unknown context key(s) {unknown}; valid keys are {sorted(CONTEXT_DEFAULTS)}", key=unknown[0]
        )
    options = {**CONTEXT_DEFAULTS, **{k: v for k, v in context.items() if v is not None}}

    def check(key, ok, must):
        if not ok:
            raise InvalidContextError(f"{key} must be {must}, got {options[key]!r}", key=key)

    check("processing_level", options["processing_level"] in ("L1C", "L2A"), "'L1C' or 'L2A'")
    check("output", options["output"] in OUTPUT_KINDS, f"one of {list(OUTPUT_KINDS)}")
    check("radiometric_offset", _number(options["radiometric_offset"]), "a number")
    check("buffer_m", _number(options["buffer_m"]) and options["buffer_m"] >= 0, ">= 0 metres")
    if options["buffer_m"] and options["output"] == "probabilities":
        raise InvalidContextError(
            "buffer_m applies to output 'classes' or 'cloud_detection', not 'probabilities'; set buffer_m to 0",
            key="buffer_m",
        )
    pixel = options["pixel_size_m"]
    check("pixel_size_m", pixel is None or (_number(pixel) and pixel > 0), "a positive number of metres")
    for key in ("window_size", "window_overlap"):
        value = options[key]
        check(key, value is None or (not isinstance(value, bool) and isinstance(value, int) and value >= 0),
              "a non-negative integer number of pixels")
    check("model", isinstance(options["model"], str) and bool(options["model"]), "a model id string")
    return Options(**options)


def output_band_names(output: str) -> list:
    """Band labels of an output kind: ``cloud_mask``; ``prob_<class>`` per class; ``cloud`` and ``shadow``."""
    if output == "classes":
        return ["cloud_mask"]
    if output == "probabilities":
        return [f"prob_{name}" for name in CLASS_CODES.values()]
    return ["cloud", "shadow"]


def metric_pixel_size(step):
    """``abs(step)`` if it is a plausible Sentinel-2 grid spacing in metres (5..1000), else None."""
    if step is None or not np.isfinite(step):
        return None
    low, high = METRIC_PIXEL_RANGE_M
    return float(abs(step)) if low <= abs(step) <= high else None


# --------------------------------------------------------------------------- model loading


class CloudMaskModel:
    """An ONNX session with its card. Build it with :func:`load_model`, which caches it per process."""

    def __init__(self, card: dict, session, onnx_path: Path):
        self.card = card
        self.session = session
        self.onnx_path = onnx_path
        self.bands = list(card["input"]["bands"])
        self.class_codes = [int(c["code"]) for c in card["output"]["classes"]]
        self.input_name = card["input"]["name"]
        self.output_name = card["output"]["name"]
        self.classes_name = card["output"].get("classes_name")  # optional: class indices
        # optional boolean graph input (default true): false skips the softmax when only class indices are wanted
        self.probabilities_switch = card["output"].get("probabilities_switch")
        tiling = card["tiling"]
        self.size_multiple = int(tiling["size_multiple"])
        self.min_tile_size = int(tiling["min_tile_size"])
        self.window = int(tiling["recommended_window"])
        self.overlap = int(tiling["recommended_overlap"])
        self.chunk = int(tiling["recommended_chunk"])
        self.resolution_m = float(card.get("resolution_m", 10.0))
        self.processing_levels = tuple(card.get("processing_levels", ("L1C", "L2A")))

    def __repr__(self):
        return f"CloudMaskModel({self.card['id']!r} v{self.card['version']}, bands={self.bands})"

    def feed(self, dn: np.ndarray, probabilities: bool = True) -> dict:
        """The session's inputs for ``dn``; ``probabilities`` False turns the card's softmax switch off, if it has
        one (for a caller that asks only for ``classes_name``)."""
        if probabilities or not self.probabilities_switch:
            return {self.input_name: dn}
        return {self.input_name: dn, self.probabilities_switch: np.array(False)}


#: How many InferenceSessions this process has created (tests and operators check "once per process").
SESSION_LOADS = {"count": 0}
#: How many times this process ran the engine on pixels (:func:`mask_array`): a Dask client should show 0.
MASK_CALLS = {"count": 0}


def model_search_dirs() -> list:
    """Where the model is looked for when ``model_dir`` is not given, in order."""
    dirs = [Path.cwd() / ARCHIVE_FOLDER / "models", Path.cwd() / ARCHIVE_FOLDER]
    here = globals().get("__file__")  # undefined when a backend execs this file as a string
    if here:
        dirs.append(Path(here).resolve().parent.parent / "models")
    try:
        import importlib.util

        spec = importlib.util.find_spec("openeo_cloudmask.models")
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(Path(p) for p in spec.submodule_search_locations)
    except ImportError:
        pass
    return dirs


def resolve_model_dir(model_dir, model_id: str) -> Path:
    """Find the directory holding ``<model_id>.json``. Errors say where it looked and what to set."""
    if model_dir is not None:
        text = str(model_dir)
        if text.startswith(("http://", "https://")):
            raise InvalidContextError(
                f"model_dir {text!r} is a web URL, and nothing downloads during masking: list the archive under the "
                f"'udf-dependency-archives' job option as '{text}#{ARCHIVE_FOLDER}' and leave model_dir unset",
                key="model_dir",
            )
        if text.startswith("file://"):
            import urllib.parse

            text = urllib.parse.unquote(urllib.parse.urlparse(text).path)
        candidates = [Path(text), Path(text) / "models"]
    else:
        candidates = model_search_dirs()
    for directory in candidates:
        if (directory / f"{model_id}.json").is_file():
            return directory
    raise ModelFileError(
        f"model {model_id!r} not found: no {model_id}.json in {[str(c) for c in candidates]}. "
        f"Set context 'model_dir', or on an openEO backend add the model archive to the job option "
        f"'udf-dependency-archives' as '<url>#{ARCHIVE_FOLDER}'"
    )


def _import_onnxruntime(model_dir):
    # A dependency archive may carry onnxruntime beside the model, or be the public onnx_deps one: make it importable.
    roots = [model_dir, model_dir.parent] if model_dir is not None else []
    found = [root for root in roots if (root / "onnxruntime").is_dir()]
    found += [root for root in [Path.cwd() / ONNX_DEPS_FOLDER] if root.is_dir()]  # '<onnx_deps zip>#onnx_deps'
    for root in found:
        if str(root) not in sys.path:
            sys.path.append(str(root))
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelFileError(
            f"onnxruntime cannot be imported ({exc}): add '{ONNX_DEPS_ARCHIVE}' to the job option "
            f"'udf-dependency-archives', or pip install onnxruntime"
        ) from None
    return onnxruntime


def _embedded_model(model_id: str):
    """``(card, onnx bytes)`` of a model carried in this file's text, or None."""
    entry = EMBEDDED_MODELS.get(model_id)
    if entry is None:
        return None
    import base64

    return json.loads(base64.b64decode(entry["card"])), base64.b64decode(entry["onnx"])


def load_model(model_id: str = DEFAULT_MODEL, model_dir=None, threads: int = 0) -> CloudMaskModel:
    """Load a model and its card once per process.

    Cached on the normalised arguments, however they are passed. The card's
    sha256, input channel count and output class count are checked against
    the ONNX file; a mismatch or a corrupt file raises :class:`ModelFileError`
    naming the file. ``threads`` caps onnxruntime's intra-op threads (0: the
    ``OPENEO_CLOUDMASK_ORT_THREADS`` environment variable, else all cores).
    """
    threads = int(threads or default_threads())
    return _load_model_cached(str(model_id), None if model_dir is None else str(model_dir), threads)


def default_threads() -> int:
    """onnxruntime intra-op threads for this process's session (0: onnxruntime's default, every core).

    ``OPENEO_CLOUDMASK_ORT_THREADS`` if set; else, inside a Dask worker, the
    worker's share of the cores (its thread count): otherwise every worker on a
    machine would start a thread per core and they would fight for them.
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit():
            raise InvalidContextError(
                f"environment variable {THREADS_ENV}={text!r} must be a whole number of threads (0: all cores)",
                key=THREADS_ENV,
            )
        return int(text)
    distributed = sys.modules.get("distributed")  # only if this process already runs Dask: never imported here
    if distributed is not None:
        try:
            return max(1, int(distributed.get_worker().state.nthreads))
        except (ValueError, AttributeError):  # not inside a worker task
            pass
    return 0


def describe_model(model_id: str = DEFAULT_MODEL, model_dir=None) -> CloudMaskModel:
    """The model's card as a :class:`CloudMaskModel` without an ONNX session: for checks before any compute."""
    embedded = _embedded_model(model_id) if model_dir is None else None
    if embedded is not None:
        return CloudMaskModel(embedded[0], None, Path("<embedded>") / embedded[0]["onnx_file"])
    directory = resolve_model_dir(model_dir, model_id)
    card_path = directory / f"{model_id}.json"
    try:
        card = json.loads(card_path.read_text())
        return CloudMaskModel(card, None, directory / card["onnx_file"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"model card {card_path} is unreadable or incomplete ({exc!r})") from None


#: lru_cache is not a lock: threads masking their first chunk at once would each build a session.
_LOAD_LOCK = threading.Lock()


def _load_model_cached(model_id: str, model_dir, threads: int) -> CloudMaskModel:
    with _LOAD_LOCK:
        return _load_model_locked(model_id, model_dir, threads)


@functools.lru_cache(maxsize=8)
def _load_model_locked(model_id: str, model_dir, threads: int) -> CloudMaskModel:
    embedded = _embedded_model(model_id) if model_dir is None else None
    described = describe_model(model_id, model_dir)
    card, onnx_path, directory = described.card, described.onnx_path, described.onnx_path.parent
    if embedded is not None:
        onnx_bytes, directory, where = embedded[1], None, f"embedded model {model_id!r}"
        fix = "the UDF code was altered: rebuild it (openeo-cloudmask publish)"
    else:
        if not onnx_path.is_file():
            raise ModelFileError(
                f"model card {directory / (model_id + '.json')} names {onnx_path.name}, which is missing from {directory}"
            )
        onnx_bytes, where, fix = onnx_path.read_bytes(), str(onnx_path), "the file is corrupt or belongs to another card"
    check_model(card, onnx_bytes, where=where, fix=fix)
    ort = _import_onnxruntime(directory)
    options = ort.SessionOptions()
    # errors only: a graph whose softmax switch is an input with a default makes onnxruntime warn on every load
    # that the switch is not folded as a constant, which is the point of it
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        source = onnx_bytes if embedded is not None else str(onnx_path)
        session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for corrupt files
        raise ModelFileError(f"{where}: onnxruntime cannot load it ({exc})") from None
    check_model(card, session=session, where=where)
    model = CloudMaskModel(card, session, onnx_path)
    SESSION_LOADS["count"] += 1
    _log.info("loaded %r from %s", model, where)
    return model


def check_model(card: dict, onnx_bytes: bytes = None, session=None, where: str = "model", fix: str = "") -> None:
    """The card against its ONNX model: the file's sha256, and the session's input bands and output classes.

    Each check runs for what is given (``onnx_bytes``, an onnxruntime
    ``session``); a mismatch raises :class:`ModelFileError` naming ``where``
    and, for the hash, ``fix``. :func:`load_model` runs both on every load.
    """
    described = CloudMaskModel(card, session, Path(str(card.get("onnx_file", ""))))
    if onnx_bytes is not None:
        digest, expected = hashlib.sha256(onnx_bytes).hexdigest(), str(card.get("onnx_sha256"))
        if digest != expected:
            raise ModelFileError(
                f"{where}: sha256 {digest[:12]}... does not match its card ({expected[:12]}...){'; ' + fix if fix else ''}"
            )
    if session is None:
        return
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if inputs.get(described.input_name, [None, None])[1] != len(described.bands):
        raise ModelFileError(f"{where}: input {inputs} does not take the card's {len(described.bands)} bands {described.bands}")
    if outputs.get(described.output_name, [None, None])[1] != len(described.class_codes):
        raise ModelFileError(f"{where}: output {outputs} does not give the card's classes {described.class_codes}")
    if described.classes_name is not None and outputs.get(described.classes_name, [None, None])[1] != 1:
        raise ModelFileError(f"{where}: outputs {outputs} lack the card's class-index output {described.classes_name!r}")
    switch = described.probabilities_switch
    if switch is not None and switch not in {i.name for i in session.get_overridable_initializers()}:
        raise ModelFileError(f"{where}: the graph has no input {switch!r} with a default, which its card names as "
                             "the switch that skips the softmax; re-export the model or drop the key from the card")


# --------------------------------------------------------------------------- tiling and blending


def tile_windows(length: int, window: int, overlap: int, multiple: int) -> tuple:
    """Cut an axis of ``length`` pixels into equal windows that overlap by at least ``overlap``.

    Returns ``(size, starts)``. Every start is a multiple of ``multiple`` (the
    network's total stride): a window that starts off that grid sees every
    4x4 and 32x32 block shifted and answers differently. The window count is
    the fewest that keeps the overlap; the size is then shrunk to just cover
    the axis (rounded up to ``multiple``), so little work is wasted. The last
    window may hang over the end by less than ``multiple`` pixels, and an
    axis shorter than one window gets a single window; both are padded.
    """
    if length <= window:
        return int(math.ceil(length / multiple) * multiple), [0]
    step = window - overlap - multiple  # room for snapping starts to the grid
    count = int(math.ceil((length - overlap - multiple) / step)) if step > 0 else 1
    count = max(count, 2)
    size = int(math.ceil((length + (count - 1) * (overlap + multiple)) / count / multiple) * multiple)
    size = min(size, window)
    last = int(math.ceil((length - size) / multiple) * multiple)
    starts = (np.linspace(0, last, count) / multiple).round().astype(int) * multiple
    return size, starts.tolist()


def grid_phase(coordinate) -> int:
    """Global pixel index of a coordinate vector's first element (0 if the axis is not regular).

    Chunks of one scene carry slices of the same coordinates, so snapping
    windows to a grid anchored on this index (instead of on the chunk's own
    corner) makes the result independent of where chunks start.

    Trap: coordinates are pixel corners (``value / spacing`` is a whole
    number) or, as openEO backends give them, pixel centres (a half). ``round``
    sends halves to the even neighbour, so chunks starting on odd pixels would
    be one pixel off; flooring ``value / spacing + 0.25`` keeps both
    conventions a quarter pixel away from any rounding edge.
    """
    values = np.asarray(coordinate, dtype=np.float64) if coordinate is not None else np.zeros(0)
    if values.size < 2 or not np.isfinite(values[:2]).all() or values[1] == values[0]:
        return 0
    return int(math.floor(values[0] / (values[1] - values[0]) + 0.25))


def window_cores(starts: list, size: int, length: int) -> list:
    """Per window, the ``(lo, hi)`` part of the axis it answers for: seams halfway through each overlap.

    A pixel of a window's core is at least half the windows' overlap away from
    that window's cut edges (scene edges are the same for every chunking).
    """
    seams = [(starts[i + 1] + starts[i] + size) // 2 for i in range(len(starts) - 1)]
    bounds = [0] + seams + [length]
    return list(zip(bounds[:-1], bounds[1:]))


def _pad_lead(image: np.ndarray, lead_y: int, lead_x: int) -> np.ndarray:
    """float32 (C, lead_y + h, lead_x + w): ``image`` reflected up and left by the lead, in one allocation.

    The same values as ``np.pad(image, ..., mode="reflect")`` (symmetric where
    the image is smaller than the lead), converted to float32 on the way.
    """
    c, h, w = image.shape
    if min(h, w) <= max(lead_y, lead_x):
        return np.pad(image, ((0, 0), (lead_y, 0), (lead_x, 0)), mode="symmetric").astype(np.float32, copy=False)
    out = np.empty((c, h + lead_y, w + lead_x), dtype=np.float32)
    out[:, lead_y:, lead_x:] = image
    if lead_y:
        out[:, :lead_y, lead_x:] = image[:, lead_y:0:-1, :]
    if lead_x:
        out[:, :, :lead_x] = out[:, :, 2 * lead_x : lead_x : -1]
    return out


def _pad_to(block: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (C, h, w) up to (C, height, width) by reflection (symmetric where the block is tiny)."""
    _, h, w = block.shape
    if (h, w) == (height, width):
        return block
    pad = ((0, 0), (0, height - h), (0, width - w))
    mode = "reflect" if min(h, w) > 1 else "symmetric"
    return np.pad(block, pad, mode=mode)


def _window_input(dn: np.ndarray, lead_y: int, lead_x: int, r: int, c: int, height: int, width: int) -> np.ndarray:
    """float32 model input (1, C, height, width): the window at (r, c) of ``dn`` placed on the stride grid.

    Window coordinates count from ``lead`` px before the image (the chunk's
    offset from the 32 px grid); wherever the window reaches past the image
    (the lead, or past its end), it holds the image's reflection, the values
    of ``np.pad(..., mode="reflect")``. One allocation: converted, cut and
    padded in a single copy.
    """
    channels, h, w = dn.shape
    y0, x0 = r - lead_y, c - lead_x  # window start in image coordinates (negative in the lead)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + height - h), max(0, x0 + width - w)
    inner = dn[:, y0 + top : y0 + height - bottom, x0 + left : x0 + width - right]
    ih, iw = inner.shape[1:]
    if max(top, bottom) >= ih - 1 or max(left, right) >= iw - 1:  # a chunk thinner than its padding: pad it all
        whole = _pad_lead(dn, lead_y, lead_x)
        whole = _pad_to(whole, max(whole.shape[1], r + height), max(whole.shape[2], c + width))
        return np.ascontiguousarray(whole[None, :, r : r + height, c : c + width])
    out = np.empty((1, channels, height, width), dtype=np.float32)
    body = out[0]
    body[:, top : top + ih, left : left + iw] = inner
    rows = slice(left, left + iw)
    if top:
        body[:, :top, rows] = body[:, 2 * top : top : -1, rows]
    if bottom:
        end = top + ih
        body[:, end:, rows] = body[:, end - 2 : end - 2 - bottom : -1, rows]
    if left:
        body[:, :, :left] = body[:, :, 2 * left : left : -1]
    if right:
        end = left + iw
        body[:, :, end:] = body[:, :, end - 2 : end - 2 - right : -1]
    return out


def predict(model: CloudMaskModel, dn: np.ndarray, window=None, overlap=None, origin=(0, 0), output_name=None):
    """One ONNX output (K, H, W) for one image of digital numbers (C, H, W), in the card's band order.

    ``output_name`` defaults to the card's probabilities; a model whose card
    names ``classes_name`` also gives the (1, H, W) uint8 index of the most
    probable class, and with the card's ``probabilities_switch`` it does so
    without computing the softmax.

    The image is cut into windows (see :func:`tile_windows`) that share at
    least ``2 * overlap`` pixels, and each pixel is answered by the one window
    whose core holds it (:func:`window_cores`), so every answer has at least
    ``overlap`` pixels of real context on each side. With ``overlap`` at least
    the receptive field's reach (the card's ``recommended_overlap``), a
    window's core is bit-identical to what a whole-scene window would give:
    no blending, no seams, and any chunking of a scene (Dask blocks,
    ``apply_neighborhood`` chunks with that overlap) gives the same result.

    ``origin`` is the global (row, column) index of the image's first pixel
    (see :func:`grid_phase`): windows start on the scene's 32 px stride grid,
    reaching up to 31 px before the image (filled by reflection), whatever
    chunk this is. A chunk that fits one window stays one window wherever it
    starts. Missing pixels must already be 0. ``dn`` may be any numeric
    dtype (converted while each window is cut). The windows run one at a
    time (batching them is no faster here and multiplies the memory).
    """
    window = window or model.window
    overlap = model.overlap if overlap is None else overlap
    multiple = model.size_multiple
    window = max(model.min_tile_size, int(math.ceil(window / multiple) * multiple))
    if 2 * overlap >= window:
        raise InvalidContextError(
            f"window_overlap {overlap} must be less than half the window size {window}", key="window_overlap"
        )
    _, height, width = dn.shape
    lead_y, lead_x = origin[0] % multiple, origin[1] % multiple
    if (lead_y or lead_x) and max(height, width) <= window:
        window += multiple
    win_h, rows = tile_windows(lead_y + height, window, 2 * overlap, multiple)
    win_w, cols = tile_windows(lead_x + width, window, 2 * overlap, multiple)
    win_h, win_w = max(win_h, model.min_tile_size), max(win_w, model.min_tile_size)

    name = output_name or model.output_name

    def run(r: int, c: int) -> np.ndarray:
        feed = model.feed(_window_input(dn, lead_y, lead_x, r, c, win_h, win_w), probabilities=name == model.output_name)
        return model.session.run([name], feed)[0][0]

    if len(rows) == 1 and len(cols) == 1:  # one window: its output is the answer
        return run(0, 0)[:, lead_y : lead_y + height, lead_x : lead_x + width]
    total = None
    for r, (y0, y1) in zip(rows, window_cores(rows, win_h, lead_y + height)):
        for c, (x0, x1) in zip(cols, window_cores(cols, win_w, lead_x + width)):
            y0, x0 = max(y0, lead_y), max(x0, lead_x)  # cores in window coordinates; the lead is not output
            part = run(r, c)
            if total is None:
                total = np.empty((part.shape[0], height, width), dtype=part.dtype)
            total[:, y0 - lead_y : y1 - lead_y, x0 - lead_x : x1 - lead_x] = part[:, y0 - r : y1 - r, x0 - c : x1 - c]
    return total


def argmax_classes(probs: np.ndarray, first: int = 0, out: np.ndarray = None) -> np.ndarray:
    """``first`` + index of the most probable class per pixel of (K, H, W), as uint8 (H, W), into ``out``.

    Plane by plane, ~10x faster than ``argmax(axis=0)``; ties go to the lower index, as in numpy.
    """
    planes = probs.shape[0]
    index = np.empty(probs.shape[1:], dtype=np.uint8) if out is None else out
    index.fill(first)
    if planes == 1:
        return index
    better = np.greater(probs[1], probs[0])
    np.copyto(index, first + 1, where=better)
    best = np.maximum(probs[0], probs[1])  # no copy of plane 0, and no running maximum after the last plane
    for k in range(2, planes):
        np.greater(probs[k], best, out=better)
        np.copyto(index, first + k, where=better)
        if k < planes - 1:
            np.maximum(best, probs[k], out=best)
    return index


# --------------------------------------------------------------------------- masking


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation (maximum) over an octagon of ``radius`` pixels, numpy only."""
    out = image.copy()
    for step in range(radius):
        src = out.copy()
        out[1:, :] = np.maximum(out[1:, :], src[:-1, :])
        out[:-1, :] = np.maximum(out[:-1, :], src[1:, :])
        out[:, 1:] = np.maximum(out[:, 1:], src[:, :-1])
        out[:, :-1] = np.maximum(out[:, :-1], src[:, 1:])
        if step % 2:  # alternate 4- and 8-neighbourhoods: an octagon, close to a disk
            src = out.copy()
            out[1:, 1:] = np.maximum(out[1:, 1:], src[:-1, :-1])
            out[:-1, :-1] = np.maximum(out[:-1, :-1], src[1:, 1:])
            out[1:, :-1] = np.maximum(out[1:, :-1], src[:-1, 1:])
            out[:-1, 1:] = np.maximum(out[:-1, 1:], src[1:, :-1])
    return out


def buffer_classes(codes: np.ndarray, radius: int) -> np.ndarray:
    """Grow cloud, semi-transparent cloud and shadow over clear pixels by ``radius`` pixels.

    Only clear pixels change; where buffers meet, cloud wins over semi-transparent
    cloud, which wins over shadow.
    """
    if radius <= 0:
        return codes
    out = codes.copy()
    clear = codes == CLEAR
    for code in (SHADOW, SEMI, CLOUD):  # later codes overwrite earlier: cloud has priority
        out[clear & _dilate(codes == code, radius)] = code
    return out


def mask_array(
    dn: np.ndarray, options: Options, model: CloudMaskModel, pixel_size_m: float = None, origin=(0, 0)
) -> np.ndarray:
    """The engine on plain numpy: (T, C, H, W) digital numbers in the model's band order -> (T, K_out, H, W).

    ``options`` come from :func:`parse_context`; ``pixel_size_m`` is the
    grid's spacing if known; ``origin`` is the global (row, column) index of
    the first pixel, for chunked runs (see :func:`grid_phase`). Output dtype
    is ``options.dtype``. The values are not checked here (see :func:`check_values`).
    """
    options = parse_context(options)
    MASK_CALLS["count"] += 1
    output = options.output
    names = options.band_names
    t, _, height, width = dn.shape
    result = np.empty((t, len(names), height, width), dtype=options.dtype)
    if result.size == 0:
        return result
    radius = options.buffer_px(options.pixel_size(model, pixel_size_m))
    offset = float(options.radiometric_offset)
    codes_lookup = np.asarray(model.class_codes, dtype=np.uint8)
    codes_in_order = model.class_codes == list(range(1, len(model.class_codes) + 1))
    for i in range(t):
        image = dn[i]
        if np.issubdtype(dn.dtype, np.unsignedinteger):  # the usual uint16 DN: 0 in any band is its minimum
            missing = np.minimum.reduce(image, axis=0) == 0
        else:
            missing = (image == 0).any(axis=0)
            if np.issubdtype(dn.dtype, np.floating):  # integers cannot be NaN
                missing |= ~np.isfinite(image).all(axis=0)
        any_missing = bool(missing.any())
        # class maps straight from the graph's class indices where the card has them: no softmax, no argmax here
        indices = output == "classes" and model.classes_name is not None
        name = model.classes_name if indices else model.output_name
        # pred: probabilities (K, H, W) in the card's class order, or class indices (1, H, W) from ``name``
        if any_missing and missing.all() and indices:
            pred = np.full((1, height, width), model.class_codes.index(MISSING), dtype=np.uint8)
        elif any_missing and missing.all():
            pred = np.zeros((len(model.class_codes), height, width), dtype=np.float32)
            pred[model.class_codes.index(MISSING)] = 1.0
        else:
            if offset or any_missing:  # written below: a float32 copy (else converted as each window is cut)
                image = image.astype(np.float32, copy=True)
            if offset:
                np.subtract(image, offset, out=image)
                np.maximum(image, 1.0, out=image)
            if any_missing:
                image[:, missing] = 0.0
            pred = predict(
                model, image, window=options.window_size, overlap=options.window_overlap, origin=origin,
                output_name=name,
            )
            if any_missing and not indices:
                pred[:, missing] = 0.0
                pred[model.class_codes.index(MISSING), missing] = 1.0
        if output == "probabilities":
            result[i] = pred[np.argsort(model.class_codes)]
        elif output == "classes":
            target = result[i, 0]
            if indices:  # class indices from the graph
                codes = np.add(pred[0], 1, out=target) if codes_in_order else codes_lookup[pred[0]]
            elif codes_in_order:  # index k is code k + 1: written straight into the result
                codes = argmax_classes(pred, first=1, out=target)
            else:
                codes = codes_lookup[argmax_classes(pred)]
            if any_missing:
                codes[missing] = MISSING
            buffered = buffer_classes(codes, radius)
            if buffered is not target:
                target[...] = buffered
        else:
            index = model.class_codes.index
            cloud = np.minimum(pred[index(CLOUD)] + pred[index(SEMI)], 1.0)
            shadow = pred[index(SHADOW)].copy()
            if radius:
                cloud, shadow = _dilate(cloud, radius), _dilate(shadow, radius)
            cloud[missing] = np.nan
            shadow[missing] = np.nan
            result[i, 0], result[i, 1] = cloud, shadow
    return result


def pixel_size_from_coords(cube: xr.DataArray):
    """Pixel size in metres from the ``x`` spacing, or None where the coordinates are not metres."""
    if "x" in cube.coords and cube.sizes["x"] > 1:
        x = np.asarray(cube.coords["x"].values)
        if np.issubdtype(x.dtype, np.number):
            return metric_pixel_size(float(x[1] - x[0]))
    return None


def check_tiling(options: Options, model: CloudMaskModel) -> None:
    """Reject a ``window_size``/``window_overlap`` the model cannot work with, naming the key to change."""
    window = options.window_size
    if window is not None and window < model.min_tile_size:
        raise InvalidContextError(
            f"window_size {window} is smaller than model {model.card['id']!r} needs: "
            f"set window_size >= {model.min_tile_size} px (default {model.window})", key="window_size"
        )
    window = window or model.window
    overlap = options.overlap(model)
    if 2 * overlap >= window:
        raise InvalidContextError(
            f"window_overlap {overlap} must be less than half of window_size {window}; "
            f"the model card recommends {model.overlap}", key="window_overlap"
        )


def check_cube(cube: xr.DataArray, options: Options, model: CloudMaskModel) -> xr.DataArray:
    """Validate dims, bands, dtype, level and scaling; return the model's bands as (t?, bands, y, x)."""
    if not isinstance(cube, xr.DataArray):
        raise InvalidInputError(f"expected an xarray.DataArray, got {type(cube).__name__}")
    dims = set(cube.dims)
    required = {"bands", "y", "x"}
    if not required <= dims or not dims <= required | {"t"}:
        raise InvalidInputError(
            f"cube dimensions {list(cube.dims)} are not supported: need 'bands', 'y', 'x' and optionally 't' "
            f"(rename_dimension, or reduce/drop the extra dimensions)"
        )
    if "bands" not in cube.coords:
        raise InvalidInputError("the 'bands' dimension has no labels; label it with Sentinel-2 band names (B02, B03, ...)")
    present = [str(b) for b in cube.coords["bands"].values]
    missing = [b for b in model.bands if b not in present]
    if missing:
        raise InvalidInputError(
            f"bands {missing} are missing: model {model.card['id']!r} needs {model.bands}, the cube has {present}; "
            f"load them (load_collection(bands=...)), or if the cube holds them under other labels, rename the band "
            f"labels to these Sentinel-2 names (rename_labels)"
        )
    level = options.processing_level
    if level not in model.processing_levels:
        raise InvalidContextError(
            f"processing_level={level!r} is not supported by model {model.card['id']!r}: "
            f"use one of {list(model.processing_levels)}", key="processing_level"
        )
    contradicting = set(present) & (_L2A_ONLY_BANDS if level == "L1C" else _L1C_ONLY_BANDS)
    if contradicting:
        other = "L2A" if level == "L1C" else "L1C"
        raise InvalidContextError(
            f"processing_level={level!r} but the cube has {other}-only band(s) {sorted(contradicting)}: "
            f"set processing_level to {other!r} or load the matching collection", key="processing_level"
        )
    if not (np.issubdtype(cube.dtype, np.integer) or np.issubdtype(cube.dtype, np.floating)) or cube.dtype == bool:
        raise InvalidInputError(
            f"cube dtype {cube.dtype} is not supported: pass digital numbers (reflectance x 10000) as an int or float type"
        )
    if np.issubdtype(cube.dtype, np.integer) and np.dtype(cube.dtype).itemsize == 1:
        raise InvalidInputError(
            f"cube dtype {cube.dtype} cannot hold digital numbers (reflectance x 10000, up to ~20000): it looks like a "
            f"byte-scaled image; load the bands as uint16 or float digital numbers"
        )
    order = [d for d in ("t", "bands", "y", "x") if d in dims]
    selected = cube if present == list(model.bands) else cube.sel(bands=model.bands)  # sel copies: skip if exact
    return selected.transpose(*order)


#: Values ignored by the reflectance-scaling check: nodata markers, not measurements.
_NODATA_MARKERS = (65535.0, 32767.0, -9999.0)


def check_values(dn: np.ndarray) -> None:
    """Refuse values that are not digital numbers: negative values, and reflectance 0..1 (in float cubes).

    The scaling check looks at the median of a sample of the valid values
    (positive, finite, not a nodata marker such as 65535), so a few nodata
    pixels cannot hide reflectance, and a few dark pixels cannot fake it.
    """
    if dn.size == 0 or np.issubdtype(dn.dtype, np.unsignedinteger):
        return
    low = float(np.fmin.reduce(dn, axis=None))  # skips NaN
    if low < 0:
        raise InvalidInputError(
            f"the cube holds negative values (min {low:g}), but digital numbers are >= 0: mark nodata as 0 "
            f"(or NaN in a float cube), and subtract an offset with radiometric_offset, not before"
        )
    if not np.issubdtype(dn.dtype, np.floating):
        return
    step = max(1, int(math.sqrt(dn[..., 0, :, :].size / 65536.0)))  # ~64k pixels per image: cheap on any chunk
    sample = dn[..., ::step, ::step]
    valid = sample[(sample > 0) & np.isfinite(sample) & ~np.isin(sample, _NODATA_MARKERS)]
    if valid.size and float(np.median(valid)) <= 2.0:
        raise InvalidInputError(
            f"values look like reflectance 0..1 (median {float(np.median(valid)):.3f}), not digital numbers: "
            f"multiply the cube by 10000 (openEO: linear_scale_range or a multiply in apply)"
        )


def mask_cube(cube: xr.DataArray, context=None) -> xr.DataArray:
    """The engine on an xarray cube: validate, mask, and keep coordinates and attributes.

    This is what every door calls: the UDF, the ``cloud_mask`` process, the CLI.
    ``context`` is a dict of context keys or an :class:`Options`. A cube with
    no pixels (a 0 x 0 chunk, or no dates) gives an empty result without
    loading the model.
    """
    options = parse_context(context)
    empty = isinstance(cube, xr.DataArray) and any(cube.sizes.get(d, 1) == 0 for d in ("t", "y", "x"))
    model = options.describe() if empty else load_model(options.model, options.model_dir)
    check_tiling(options, model)
    data = check_cube(cube, options, model)
    dn = np.asarray(data.values)
    check_values(dn)
    has_t = "t" in data.dims
    stack = dn if has_t else dn[None]
    origin = tuple(grid_phase(cube.coords[d].values if d in cube.coords else None) for d in ("y", "x"))
    result = mask_array(stack, options, model, pixel_size_from_coords(cube), origin)
    if not has_t:
        result = result[0]
    coords = {name: coord for name, coord in data.coords.items() if "bands" not in coord.dims}
    coords["bands"] = options.band_names
    out = xr.DataArray(result, dims=data.dims, coords=coords, attrs=dict(cube.attrs), name="cloud_mask")
    return out.transpose(*cube.dims)


load_model.cache_info = _load_model_locked.cache_info
load_model.cache_clear = _load_model_locked.cache_clear
