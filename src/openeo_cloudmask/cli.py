"""The ``openeo-cloudmask`` command line: ``demo``, ``predict`` and ``info``.

Run it as ``openeo-cloudmask ...`` or ``python -m openeo_cloudmask ...``; in
Python, ``main(["demo", "--out", "somewhere"])`` returns the exit code. Every
command masks through the engine, :func:`openeo_cloudmask.udf.cloud_mask.mask_cube`,
and adds nothing to it: ``predict`` streams a file through it block by block
(:func:`openeo_cloudmask.raster_io.mask_raster`), ``demo`` does the same for a
built-in scene and draws a quick-look.

Exit codes: 0 success, 2 a usage or input error (bad path, missing bands,
reflectance instead of digital numbers, bad option, missing or corrupt
model), printed as one line ``openeo-cloudmask: error: ...`` without a
traceback, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from openeo_cloudmask._version import __version__

PROG = "openeo-cloudmask"
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class UsageError(Exception):
    """A mistake in how the command was called; the message says what to change."""


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


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and masking options (the engine's context keys)")
    from openeo_cloudmask.udf.cloud_mask import DEFAULT_MODEL

    group.add_argument("--model", help=f"model id, a <id>.json card beside <id>.onnx (default {DEFAULT_MODEL})")
    group.add_argument("--model-dir", help="directory holding the model (default: the installed models)")
    group.add_argument("--output", choices=("classes", "probabilities", "cloud_detection"), default=None,
                       help="classes (uint8 KappaMask codes, default), probabilities (float32 per class) "
                            "or cloud_detection (float32 cloud and shadow)")
    group.add_argument("--buffer-m", type=float, default=None, help="grow cloud and shadow by this many metres")
    group.add_argument("--radiometric-offset", type=float, default=None,
                       help="offset baked into the digital numbers, subtracted first: 1000 for raw "
                            "processing baseline >= 04.00 files, 0 (default) for harmonised data")
    group.add_argument("--block-size", type=_positive_int, default=None,
                       help="pixels per block side while streaming (default: the model card's window minus "
                            "two halos, 1792 for the default model, so each block runs as one window); "
                            "memory follows this")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Sentinel-2 cloud and cloud-shadow mask (KappaMask codes 1 clear, 2 cloud shadow, "
                    "3 semi-transparent cloud, 4 cloud, 5 missing).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo", allow_abbrev=False, help="mask a built-in scene and write a GeoTIFF and a quick-look PNG",
        description="Mask a built-in scene: 'synthetic' (default) is generated offline from a seed; "
                    "'s2cloudless' is a real L1C scene downloaded once from PyPI (CC BY-SA 4.0).",
    )
    demo.add_argument("--out", type=Path, default=Path("cloudmask-demo"), help="output folder (default ./cloudmask-demo)")
    demo.add_argument("--scene", choices=("synthetic", "s2cloudless"), default="synthetic")
    demo.add_argument("--seed", type=int, default=None, help="seed of the synthetic scene (default 0)")
    demo.add_argument("--size", type=_positive_int, default=None, help="side of the synthetic scene in pixels (default 1024)")
    _add_model_options(demo)

    predict = commands.add_parser(
        "predict", allow_abbrev=False, help="mask a GeoTIFF or NetCDF Sentinel-2 stack into a GeoTIFF",
        description="Mask a Sentinel-2 stack of digital numbers (reflectance x 10000). GeoTIFF: one band per "
                    "Sentinel-2 band, named by the band descriptions or --bands. NetCDF: a variable with "
                    "dims bands, y, x (and t).",
    )
    predict.add_argument("input", type=Path, metavar="INPUT", help="GeoTIFF (.tif) or NetCDF (.nc) file")
    predict.add_argument("-o", "--out", type=Path, required=True, metavar="OUTPUT.tif", help="mask GeoTIFF to write")
    predict.add_argument("--bands", type=_band_list, help="Sentinel-2 names of the input bands in file order, e.g. B02,B03,B04,B08")
    predict.add_argument("--variable", help="NetCDF variable holding the image (default: reflectance)")
    predict.add_argument("--time", type=int, dest="time_index", metavar="INDEX", help="NetCDF: index along t to mask")
    predict.add_argument("--processing-level", choices=("L1C", "L2A"), default=None, help="level of the input (default L2A)")
    _add_model_options(predict)

    info = commands.add_parser("info", allow_abbrev=False, help="print versions, models found and onnxruntime providers")
    info.add_argument("--model-dir", help="also look for models in this directory")
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


def _prepare_out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file; give a folder to write the demo outputs into")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_mask(path: Path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def run_demo(args) -> int:
    from openeo_cloudmask import raster_io
    from openeo_cloudmask.quicklook import true_colour, write_quicklook

    out = _prepare_out_dir(args.out)
    started = time.perf_counter()
    if args.scene == "synthetic":
        from openeo_cloudmask.demo_scene import DEFAULT_SEED, DEFAULT_SIZE, make_demo_scene

        seed = DEFAULT_SEED if args.seed is None else args.seed
        size = args.size or DEFAULT_SIZE
        if size < 64:
            raise UsageError(f"--size must be at least 64 pixels, got {size}")
        scene = make_demo_scene(seed=seed, size=size)
        dn, bands, crs, transform, truth = scene.dn, scene.bands, scene.crs, scene.transform, scene.labels
        level = "L2A"
        name = "demo"
        about = f"built-in synthetic L2A scene (seed {seed}), {size} x {size} px, {crs}, 10 m"
        credit = f"openeo-cloudmask synthetic demo scene, seed {seed} (not real imagery)"
    else:
        if args.seed is not None or args.size is not None:
            raise UsageError("--seed and --size apply to the synthetic scene only")
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
    if args.output in (None, "classes"):
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


def run_predict(args) -> int:
    from openeo_cloudmask import raster_io

    if args.out.resolve() == args.input.resolve():
        raise UsageError(f"the output {args.out} would overwrite the input; choose another -o path")
    if not args.out.parent.is_dir():
        raise UsageError(f"the output folder {args.out.parent} does not exist")
    started = time.perf_counter()
    with raster_io.open_raster(args.input, bands=args.bands, variable=args.variable,
                               time_index=args.time_index) as source:
        run = raster_io.mask_raster(source, args.out, _context(args, args.processing_level),
                                    block_size=args.block_size, progress=not args.quiet)
    height, width = run.shape
    lines = [
        f"openeo-cloudmask predict: {args.input} ({height} x {width} px, {run.blocks} block(s), halo {run.halo} px)",
        _model_line(run.model),
    ]
    if args.output in (None, "classes"):
        lines.append("classes:")
        lines.extend(_class_lines(run.fractions()))
    lines.append(f"time:   {time.perf_counter() - started:.1f} s")
    lines.append(f"written: {run.path}")
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
    """``(card path, card or error text)`` for every model card in the engine's search path."""
    from openeo_cloudmask.model_card import ModelCardError, load_model_card
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
                found.append((card_path, load_model_card(card_path)))
            except ModelCardError as exc:
                found.append((card_path, str(exc).splitlines()[0]))
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
    lines.append(f"models (default {engine.DEFAULT_MODEL!r}):")
    models = find_models(args.model_dir)
    for card_path, card in models:
        if isinstance(card, str):
            lines.append(f"  {card_path.stem}: invalid card ({card})")
        else:
            lines.append(f"  {card.id} v{card.version}  bands {','.join(card.input.bands)}  {card_path}")
    if not models:
        lines.append("  none found")
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
    except ImportError as exc:
        providers = f"onnxruntime cannot be imported ({exc})"
    lines.append(f"onnxruntime execution providers: {providers}")
    print("\n".join(lines))
    return EXIT_OK


#: Engine context keys that errors name, and the options that set them.
CONTEXT_FLAGS = {
    "processing_level": "--processing-level",
    "radiometric_offset": "--radiometric-offset",
    "buffer_m": "--buffer-m",
    "output must": "--output",
    "model_dir": "--model-dir",
}

COMMANDS = {"demo": run_demo, "predict": run_predict, "info": run_info}


def _user_errors() -> tuple:
    """Exceptions whose message is written for users: print it, no traceback."""
    from rasterio.errors import RasterioError

    from openeo_cloudmask.model_card import ModelCardError
    from openeo_cloudmask.s2cloudless_scene import SceneDownloadError
    from openeo_cloudmask.udf.cloud_mask import CloudMaskError

    return (UsageError, CloudMaskError, ModelCardError, SceneDownloadError, RasterioError, OSError)


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        flags = [flag for key, flag in CONTEXT_FLAGS.items() if key in message]
        if flags:
            message += f" (on the command line: {', '.join(flags)})"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
