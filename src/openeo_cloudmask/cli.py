"""The ``openeo-cloudmask`` command line: ``demo``, ``predict``, ``info`` (and ``publish``, the release door).

Run it as ``openeo-cloudmask ...`` or ``python -m openeo_cloudmask ...``; in
Python, ``main(["demo", "--out", "somewhere"])`` returns the exit code. Every
command masks through the engine, :func:`openeo_cloudmask.udf.cloud_mask.mask_cube`,
and adds nothing to it: ``predict`` streams a file through it block by block
(:func:`openeo_cloudmask.raster_io.mask_raster`), ``demo`` does the same for a
built-in scene and draws a quick-look.

Exit codes: 0 success, 2 a usage or input error (bad path, missing bands,
reflectance instead of digital numbers, bad option, missing or corrupt
model), printed as one line ``openeo-cloudmask: error: ...`` without a
traceback, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). A bad output
path is refused before any work, and an interrupted or failed run leaves no
partial file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from openeo_cloudmask._version import __version__

PROG = "openeo-cloudmask"
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class UsageError(Exception):
    """A mistake in how the command was called; the message says what to change."""


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so that every ``finally`` runs and no ``.part`` file stays.

    A BaseException, like KeyboardInterrupt: ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# --------------------------------------------------------------------------- argument parsing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _band_list(text: str) -> list:
    bands = [b.strip() for b in text.split(",") if b.strip()]
    if not bands:
        raise argparse.ArgumentTypeError("expected comma-separated band names, e.g. B02,B03,B04,B08")
    return bands


def _default_block() -> str:
    """The default block edge as the engine states it (``Options.local_chunk``: the largest block whose halo fits
    one engine window)."""
    from openeo_cloudmask.udf import cloud_mask as engine

    options = engine.parse_context({})
    try:
        return f"{options.local_chunk(options.describe())} px for {options.model}"
    except engine.CloudMaskError:  # no default model installed: --help still works
        return "see its card"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from openeo_cloudmask.udf import cloud_mask as engine

    defaults = engine.parse_context({})
    group = parser.add_argument_group("model and masking options (the engine's context keys)")
    group.add_argument("--model", help=f"model id, a <id>.json card beside <id>.onnx (default {defaults.model})")
    group.add_argument("--model-dir", help="directory holding the model (default: the installed models)")
    group.add_argument("--output", choices=engine.OUTPUT_KINDS, default=None,
                       help=f"classes (uint8 KappaMask codes), probabilities (float32 per class) "
                            f"or cloud_detection (float32 cloud and shadow); default {defaults.output}")
    group.add_argument("--buffer-m", type=float, default=None, help="grow cloud and shadow by this many metres")
    group.add_argument("--radiometric-offset", type=float, default=None,
                       help=f"offset baked into the digital numbers, subtracted first: 1000 for raw "
                            f"processing baseline >= 04.00 files, 0 for harmonised data "
                            f"(default {defaults.radiometric_offset})")
    group.add_argument("--block-size", type=_positive_int, default=None,
                       help=f"pixels per block side while streaming; each block is read with the model's halo "
                            f"around it, so memory follows this (default: the largest block whose halo fits one "
                            f"engine window, {_default_block()})")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def _environment_help() -> str:
    from openeo_cloudmask.udf import cloud_mask as engine

    return (f"environment: {engine.THREADS_ENV}=N sets onnxruntime's threads per process (0: every core; "
            f"unset: every core, or inside a Dask worker the worker's thread count). 'info' shows the value in effect.")


def build_parser() -> argparse.ArgumentParser:
    from openeo_cloudmask.udf import cloud_mask as engine

    classes = ", ".join(f"{code} {name.replace('_', ' ')}" for code, name in engine.CLASS_CODES.items())
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False, epilog=_environment_help(),
        description=f"Sentinel-2 cloud and cloud-shadow mask (KappaMask codes {classes}).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", allow_abbrev=False, help="mask a built-in scene and write a GeoTIFF and a quick-look PNG",
        epilog=_environment_help(),
        description="Mask a built-in scene: 'synthetic' (default) is generated offline from a seed; "
                    "'s2cloudless' is a real L1C scene downloaded once from PyPI (CC BY-SA 4.0).",
    )
    demo.add_argument("--out", type=Path, default=Path("cloudmask-demo"), help="output folder (default ./cloudmask-demo)")
    demo.add_argument("--scene", choices=("synthetic", "s2cloudless"), default="synthetic")
    from openeo_cloudmask.demo_scene import DEFAULT_SEED, DEFAULT_SIZE

    demo.add_argument("--seed", type=int, default=None, help=f"seed of the synthetic scene (default {DEFAULT_SEED})")
    demo.add_argument("--size", type=_positive_int, default=None,
                      help=f"side of the synthetic scene in pixels (default {DEFAULT_SIZE})")
    _add_model_options(demo)

    predict = commands.add_parser(
        "predict", allow_abbrev=False, help="mask a GeoTIFF or NetCDF Sentinel-2 stack into a GeoTIFF or NetCDF",
        epilog=_environment_help(),
        description="Mask a Sentinel-2 stack of digital numbers (reflectance x 10000). GeoTIFF: one band per "
                    "Sentinel-2 band, named by the band descriptions or --bands. NetCDF: a variable with "
                    "dims bands, y, x (and t).",
    )
    predict.add_argument("input", type=Path, metavar="INPUT", help="GeoTIFF (.tif) or NetCDF (.nc) file")
    predict.add_argument("-o", "--out", type=Path, required=True, metavar="OUTPUT",
                         help="mask file to write: a GeoTIFF (.tif) or a NetCDF (.nc), told by the name's ending")
    predict.add_argument("--bands", type=_band_list, help="Sentinel-2 names of the input bands in file order, e.g. B02,B03,B04,B08")
    predict.add_argument("--variable", help="NetCDF variable holding the image (default: reflectance)")
    predict.add_argument("--time", type=int, dest="time_index", metavar="INDEX", help="NetCDF: index along t to mask")
    predict.add_argument("--processing-level", default=None,
                         help=f"level of the input, L1C or L2A (default {engine.parse_context({}).processing_level})")
    _add_model_options(predict)

    info = commands.add_parser("info", allow_abbrev=False, help="print versions, models found and onnxruntime providers")
    info.add_argument("--model-dir", help="also look for models in this directory")

    from openeo_cloudmask.release import publish

    publish.add_arguments(commands.add_parser(
        "publish", allow_abbrev=False, help="store the self-contained cloud_mask UDP in your openEO account",
        description=publish.__doc__.split("\n\n")[0] + " --dry-run writes the JSON only."))
    return parser


def _context(args, processing_level=None) -> dict:
    """The engine context from the command-line options (unset options keep the engine's defaults)."""
    context = {
        "model": args.model,
        "model_dir": args.model_dir,
        "output": args.output,
        "buffer_m": args.buffer_m,
        "radiometric_offset": args.radiometric_offset,
        "processing_level": processing_level,
    }
    return {key: value for key, value in context.items() if value is not None}


# --------------------------------------------------------------------------- summaries


def _class_lines(fractions: dict) -> list:
    from openeo_cloudmask.quicklook import CLASS_STYLE

    return [f"  {code} {CLASS_STYLE[code][0]:<24}{fractions.get(code, 0.0):6.1f} %" for code in CLASS_STYLE]


def _model_line(model) -> str:
    return f"model:  {model.card['id']} v{model.card['version']} ({model.onnx_path})"


# --------------------------------------------------------------------------- commands


def _gives_classes(args) -> bool:
    """Whether the run writes class codes (the engine's default output, unless --output says otherwise)."""
    from openeo_cloudmask.udf.cloud_mask import parse_context

    return parse_context(_context(args)).output == "classes"


def _check_model(context: dict) -> None:
    """Let the engine refuse the options and load the model (cached for the run) before any other work."""
    from openeo_cloudmask.udf import cloud_mask as engine

    options = engine.parse_context(context)
    engine.load_model(options.model, options.model_dir)


def _read_mask(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def run_demo(args) -> int:
    from openeo_cloudmask import raster_io
    from openeo_cloudmask.demo_scene import DEFAULT_SEED, DEFAULT_SIZE, make_demo_scene
    from openeo_cloudmask.quicklook import true_colour, write_quicklook

    # every option is checked before any work: a mistake costs no scene and leaves no folder behind
    seed = DEFAULT_SEED if args.seed is None else args.seed
    size = args.size or DEFAULT_SIZE
    if args.scene == "synthetic" and size < 64:
        raise UsageError(f"--size must be at least 64 pixels, got {size}")
    if args.scene != "synthetic" and (args.seed is not None or args.size is not None):
        raise UsageError("--seed and --size apply to the synthetic scene only")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder to write the demo outputs into")
    _check_model(_context(args))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.scene == "synthetic":
        scene = make_demo_scene(seed=seed, size=size)
        dn, bands, crs, transform, truth = scene.dn, scene.bands, scene.crs, scene.transform, scene.labels
        level = "L2A"
        name = "demo"
        about = f"built-in synthetic L2A scene (seed {seed}), {size} x {size} px, {crs}, 10 m"
        credit = f"openeo-cloudmask synthetic demo scene, seed {seed} (not real imagery)"
    else:
        from openeo_cloudmask.s2cloudless_scene import load_s2cloudless_scene

        scene = load_s2cloudless_scene(log=lambda text: print(text, file=sys.stderr))
        dn, bands, crs, transform, truth = scene.dn, scene.bands, None, None, None
        level = scene.processing_level
        name = "s2cloudless"
        about = (f"s2cloudless 1.2.1 test scene, real Sentinel-2 L1C, {dn.shape[1]} x {dn.shape[2]} px, "
                 f"13 bands, not georeferenced")
        credit = scene.credit
    made = time.perf_counter() - started

    scene_path = raster_io.write_stack(out / f"{name}_scene.tif", dn, bands, crs, transform)
    mask_path = out / f"{name}_cloud_mask.tif"
    with raster_io.open_raster(scene_path) as source:
        run = raster_io.mask_raster(source, mask_path, _context(args, level), block_size=args.block_size,
                                    progress=not args.quiet)

    lines = [f"openeo-cloudmask demo: {about}", _model_line(run.model)]
    quicklook_path = None
    if _gives_classes(args):
        codes = _read_mask(mask_path)
        fractions = run.fractions()
        band = {b: i for i, b in enumerate(bands)}
        rgb = true_colour(dn[band["B04"]], dn[band["B03"]], dn[band["B02"]], valid=(dn > 0).all(axis=0))
        model = run.model.card
        quicklook_path = write_quicklook(
            out / f"{name}_quicklook.png", rgb, codes,
            title=f"openeo-cloudmask {model['id']} v{model['version']}: {name} scene",
            caption=credit, fractions=fractions,
        )
        lines.append("classes:")
        lines.extend(_class_lines(fractions))
        if truth is not None:
            agree = float((codes == truth).mean() * 100)
            lines.append(f"agreement with the generator's ground truth: {agree:.1f} % of pixels")
        else:
            cloudy = (codes == 3) | (codes == 4)
            lines.append(
                f"cloud (3 + 4): {cloudy.mean() * 100:.1f} % here, {scene.cloud_mask.mean() * 100:.1f} % in "
                f"s2cloudless's own mask; they agree on {(cloudy == scene.cloud_mask.astype(bool)).mean() * 100:.1f} % of pixels"
            )
    lines.append(f"time:   {time.perf_counter() - started:.1f} s (scene {made:.1f} s, masking {run.seconds:.1f} s)")
    lines.append("written:")
    lines.extend(f"  {p}" for p in (scene_path, mask_path, quicklook_path) if p is not None)
    if args.scene == "s2cloudless":
        lines.append(f"credit: {credit}")
    print("\n".join(lines))
    return EXIT_OK


def output_format(out: Path, input_path: Path) -> str:
    """``"GeoTIFF"`` or ``"NetCDF"`` for the ``-o`` path, or :class:`UsageError` before any work is done.

    The format follows the name's ending (raster_io's GeoTIFF and NetCDF
    suffixes). A folder, an unknown ending, the input itself, a missing or
    unwritable folder are refused here, so that a bad path never costs a masking run.
    """
    from openeo_cloudmask.raster_io import GEOTIFF_SUFFIXES, NETCDF_SUFFIXES

    if out.is_dir():
        raise UsageError(f"-o {out} is a folder; give the mask a file name, e.g. -o {out / 'mask.tif'}")
    suffix = out.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        kind = "GeoTIFF"
    elif suffix in NETCDF_SUFFIXES:
        kind = "NetCDF"
    else:
        raise UsageError(
            f"-o {out}: the ending {suffix or '(none)'!r} names no format; end the name with "
            f"{' or '.join(GEOTIFF_SUFFIXES[:1] + NETCDF_SUFFIXES[:1])} (GeoTIFF or NetCDF)"
        )
    if out.resolve() == input_path.resolve():
        raise UsageError(f"the output {out} would overwrite the input; choose another -o path")
    if not out.parent.is_dir():
        raise UsageError(f"the output folder {out.parent} does not exist; create it or choose another -o path")
    if not os.access(out.parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UsageError(f"{out} cannot be written (permissions); choose another -o path")
    return kind


def write_netcdf_copy(geotiff: Path, path: Path) -> Path:
    """Copy a mask GeoTIFF written by raster_io into a CF NetCDF file, strip by strip.

    One variable per band, named by the band descriptions, over pixel-centre
    ``y``/``x`` coordinates with a ``spatial_ref`` grid mapping (``crs_wkt``
    and ``GeoTransform``, as rioxarray and the NetCDF input reader use). The
    GeoTIFF's tags (model, version, classes, source) become global
    attributes. Class maps carry CF ``flag_values``/``flag_meanings`` and no
    fill value (5 is the class "missing"); probabilities keep NaN as fill.
    """
    import netCDF4
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from openeo_cloudmask.udf.cloud_mask import CLASS_CODES

    with rasterio.open(geotiff) as src, netCDF4.Dataset(path, "w", format="NETCDF4") as dst:
        height, width, transform = src.height, src.width, src.transform
        dst.setncatts({"Conventions": "CF-1.8", **src.tags()})
        dst.createDimension("y", height)
        dst.createDimension("x", width)
        xs, _ = rasterio.transform.xy(transform, [0] * width, list(range(width)), offset="center")
        _, ys = rasterio.transform.xy(transform, list(range(height)), [0] * height, offset="center")
        for name, values in (("x", xs), ("y", ys)):
            coord = dst.createVariable(name, "f8", (name,))
            coord[:] = np.asarray(values, dtype=np.float64)
            if src.crs is not None:
                coord.setncatts({"standard_name": f"projection_{name}_coordinate", "units": "m"})
        grid = {}
        if src.crs is not None:
            spatial_ref = dst.createVariable("spatial_ref", "i4")
            spatial_ref.setncatts({"crs_wkt": src.crs.to_wkt(), "spatial_ref": src.crs.to_wkt(),
                                   "GeoTransform": " ".join(str(v) for v in transform.to_gdal())})
            grid = {"grid_mapping": "spatial_ref"}
        chunks = (min(256, height), min(256, width))
        variables = []
        for name, dtype in zip(src.descriptions, src.dtypes):
            is_float = np.dtype(dtype).kind == "f"
            variable = dst.createVariable(name, dtype, ("y", "x"), zlib=True, complevel=4, chunksizes=chunks,
                                          fill_value=np.nan if is_float else False)
            variable.setncatts(grid)
            if not is_float:
                variable.setncatts({
                    "flag_values": np.asarray(list(CLASS_CODES), dtype=dtype),
                    "flag_meanings": " ".join(CLASS_CODES.values()),
                })
            variables.append(variable)
        for row in range(0, height, 256):
            rows = min(256, height - row)
            strip = src.read(window=Window(0, row, width, rows))
            for variable, band in zip(variables, strip):
                variable[row:row + rows, :] = band
    return path


def run_predict(args) -> int:
    from openeo_cloudmask import raster_io

    kind = output_format(args.out, args.input)
    _check_model(_context(args, args.processing_level))
    started = time.perf_counter()
    # NetCDF: raster_io streams into a GeoTIFF beside the output, which is then copied into the NetCDF file.
    geotiff = args.out if kind == "GeoTIFF" else args.out.with_name(args.out.name + ".part.tif")
    partial = args.out.with_name(args.out.name + ".part")
    try:
        with raster_io.open_raster(args.input, bands=args.bands, variable=args.variable,
                                   time_index=args.time_index) as source:
            labels = "--bands" if args.bands else "its band descriptions or by --bands in file order"
            with _the_cube_is(f"{args.input}, its bands labelled by {labels}"):
                run = raster_io.mask_raster(source, geotiff, _context(args, args.processing_level),
                                            block_size=args.block_size, progress=not args.quiet)
        if kind == "NetCDF":
            write_netcdf_copy(geotiff, partial).replace(args.out)
    finally:
        if kind == "NetCDF":
            geotiff.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
    height, width = run.shape
    lines = [
        f"openeo-cloudmask predict: {args.input} ({height} x {width} px, {run.blocks} block(s), halo {run.halo} px)",
        _model_line(run.model),
    ]
    if _gives_classes(args):
        lines.append("classes:")
        lines.extend(_class_lines(run.fractions()))
    lines.append(f"time:   {time.perf_counter() - started:.1f} s")
    lines.append(f"written: {args.out} ({kind})")
    print("\n".join(lines))
    return EXIT_OK


def _version_of(module: str) -> str:
    import importlib
    import importlib.metadata

    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        try:
            return getattr(importlib.import_module(module), "__version__", "unknown")
        except ImportError:
            return "not installed"


def find_models(extra_dir=None) -> list:
    """``(card path, model or None, problem or None)`` for every model card in the engine's search path.

    Each model is loaded the way masking loads it (:func:`~openeo_cloudmask.udf.cloud_mask.load_model`),
    so the card is checked against its ONNX file (sha256, input bands, output classes) by the engine's
    own check: a card the engine cannot read is an "invalid card", a readable card whose ONNX file it
    refuses is "corrupt".
    """
    from openeo_cloudmask.udf import cloud_mask as engine

    dirs = ([Path(extra_dir)] if extra_dir else []) + engine.model_search_dirs()
    found, seen = [], set()
    for directory in dirs:
        if not directory.is_dir():
            continue
        for card_path in sorted(directory.glob("*.json")):
            if card_path.resolve() in seen:
                continue
            seen.add(card_path.resolve())
            try:
                described = engine.describe_model(card_path.stem, directory)
            except engine.CloudMaskError as exc:
                found.append((card_path, None, f"invalid card ({' '.join(str(exc).split())})"))
                continue
            try:  # one thread: a check, not a run (and no dependence on the threads variable)
                found.append((card_path, engine.load_model(card_path.stem, directory, threads=1), None))
            except engine.ModelFileError as exc:
                found.append((card_path, described, f"corrupt: {' '.join(str(exc).split())}"))
    return found


def run_info(args) -> int:
    import platform

    from openeo_cloudmask.udf import cloud_mask as engine

    lines = ["openeo-cloudmask info", "versions:"]
    lines.append(f"  {'python':<18}{platform.python_version()} ({sys.executable})")
    for name in ("openeo-cloudmask", "numpy", "xarray", "onnxruntime", "openeo", "rasterio", "netCDF4", "pydantic"):
        lines.append(f"  {name:<18}{_version_of(name)}")
    try:
        import rasterio

        lines.append(f"  {'GDAL':<18}{rasterio.__gdal_version__}")
    except ImportError:
        pass
    lines.append(f"models (default {engine.DEFAULT_MODEL!r}; each checked against its card's sha256, bands and classes):")
    models = find_models(args.model_dir)
    for card_path, model, problem in models:
        name = f"{model.card.get('id', card_path.stem)} v{model.card.get('version', '?')}" if model else card_path.stem
        if problem:
            lines.append(f"  {name}: {problem}")
        else:
            lines.append(f"  {name}  ok  bands {','.join(model.bands)}  {card_path}")
    if not models:
        lines.append("  none found")
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
    except ImportError as exc:
        providers = f"onnxruntime cannot be imported ({exc})"
    lines.append(f"onnxruntime execution providers: {providers}")
    try:
        threads = engine.default_threads()
        lines.append(f"onnxruntime threads per process: {threads or 'every core'} "
                     f"({engine.THREADS_ENV}={os.environ.get(engine.THREADS_ENV, '') or 'unset'})")
    except engine.CloudMaskError as exc:
        lines.append(f"onnxruntime threads per process: {' '.join(str(exc).split())}")
    print("\n".join(lines))
    return EXIT_OK


#: The engine's error keys (``CloudMaskError.key``: its context keys) and the options that set them here.
#: Key "data" (the cube) is translated where the cube is made: :func:`_the_cube_is`.
OPTION_OF_KEY = {
    "processing_level": "--processing-level",
    "radiometric_offset": "--radiometric-offset",
    "buffer_m": "--buffer-m",
    "output": "--output",
    "model": "--model, --model-dir",
    "model_dir": "--model-dir",
    "block_size": "--block-size",
}


@contextlib.contextmanager
def _the_cube_is(description: str):
    """Engine errors about the cube (key "data") raised inside say what "the cube" is on the command line."""
    from openeo_cloudmask.udf.cloud_mask import CloudMaskError

    try:
        yield
    except CloudMaskError as exc:
        if exc.key == "data":
            exc.command_line = f"the cube is {description}"
        raise


def error_line(exc: BaseException) -> str:
    """The one line a user error prints: the message, and what fixes it on the command line.

    That is the option for the error's key (:data:`OPTION_OF_KEY`), or for an
    error about the cube, what the cube is here (:func:`_the_cube_is`).
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    hint = getattr(exc, "command_line", None) or OPTION_OF_KEY.get(getattr(exc, "key", None))
    if hint:
        message += f" (on the command line: {hint})"
    return f"{PROG}: error: {message}"


def run_publish(args) -> int:
    """``publish``: a door to :mod:`openeo_cloudmask.release.publish` (which prints its own one-line errors)."""
    from openeo_cloudmask.release.publish import run

    return run(args)


COMMANDS = {"demo": run_demo, "predict": run_predict, "info": run_info, "publish": run_publish}


def _user_errors() -> tuple:
    """Exceptions whose message is written for users: print it, no traceback."""
    from rasterio.errors import RasterioError

    from openeo_cloudmask.model_card import ModelCardError
    from openeo_cloudmask.s2cloudless_scene import SceneDownloadError
    from openeo_cloudmask.udf.cloud_mask import CloudMaskError

    return (UsageError, CloudMaskError, ModelCardError, SceneDownloadError, RasterioError, OSError)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a command runs, SIGTERM raises :class:`Terminated` instead of killing the process outright.

    The default action ends the process without running ``finally`` blocks,
    so a half-written ``.part`` file would stay. Outside the main thread
    (``main`` called from a worker thread) signals stay the caller's business.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # signal only works in the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _release(exc: BaseException) -> None:
    """Free what the failed command's frames hold, before the error is printed.

    A progress bar still referenced from a frame of the traceback would close
    (and redraw itself) only after the message, on the message's line.
    """
    traceback.clear_frames(exc.__traceback__)
    gc.collect()  # and what only a reference cycle still holds


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        with _sigterm_unwinds():
            return COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        _release(exc)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        _release(exc)
        print(f"{PROG}: terminated", file=sys.stderr)
        return 128 + exc.signum
    except _user_errors() as exc:
        _release(exc)
        print(error_line(exc), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
