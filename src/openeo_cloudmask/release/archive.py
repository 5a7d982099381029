"""Build the UDF dependency archive: the model (+ card) and onnxruntime, for ``udf-dependency-archives``.

An openEO backend (geopyspark, as on CDSE) downloads each entry of the job option
``udf-dependency-archives`` (``"<url>#<folder>"``) and unpacks the zip into
``<folder>`` in the UDF's working directory. The UDF
(``udf/cloud_mask.py``) looks for ``./cloudmask_deps/models/<model>.json`` and,
beside it, ``./cloudmask_deps/onnxruntime/``, so the zip's root holds::

    models/<model>.json            the card (sha256 of the .onnx inside)
    models/<model>.onnx
    onnxruntime/                   the package, unpacked from the wheel for the UDF runtime
    onnxruntime-<v>.dist-info/
    cloudmask_deps_manifest.json   what is inside, for whom it was built

onnxruntime must match the backend's Python and platform, not yours: by default
the wheel for CDSE's runtime (CPython 3.11, manylinux_2_28_x86_64) is fetched
with ``pip download --only-binary :all: --platform ... --python-version ...``.
Its version defaults to the onnxruntime installed here, so what ships is what
the tests ran. ``--no-onnxruntime`` builds a models-only archive (for a backend
whose image already has onnxruntime), ``--onnxruntime-from`` takes a wheel or an
installed package directory instead of downloading (offline builds, tests).

    python -m openeo_cloudmask.release.archive            # dist/cloudmask_deps-<model>-cp311-manylinux_2_28_x86_64.zip
    make archive

This is the *archive form* of the release, for a maintainer who has a release URL:
upload the zip to the URL :func:`openeo_cloudmask.release.settings.archive_url` prints
(the ``RELEASE_URL`` setting). The default, self-contained UDP needs no archive of ours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from openeo_cloudmask._version import __version__
from openeo_cloudmask.release.settings import (
    CDSE_PLATFORM,
    CDSE_PYTHON,
    MODELS_DIR,
    REPO,
    ReleaseError,
    archive_name,
    archive_url,
    dependency_archive_option,
)
from openeo_cloudmask.udf.cloud_mask import ARCHIVE_FOLDER, DEFAULT_MODEL

MANIFEST_NAME = "cloudmask_deps_manifest.json"
#: Fixed zip timestamps, so that the same inputs give the same bytes.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class ArchiveBuildError(ReleaseError):
    """An input of the archive is missing or unusable; the message says what to do."""


def _model_files(card_path: Path) -> list:
    card = json.loads(card_path.read_text())
    onnx = card_path.parent / card["onnx_file"]
    if not onnx.is_file():
        raise ArchiveBuildError(f"{card_path} names {onnx.name}, which is missing from {card_path.parent}")
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest()
    if digest != card.get("onnx_sha256"):
        raise ArchiveBuildError(f"{onnx} does not match the sha256 in {card_path.name}: rebuild or re-export the model")
    return [(card_path, f"models/{card_path.name}"), (onnx, f"models/{onnx.name}")]


def download_onnxruntime_wheel(dest: Path, version: str = None, python: str = CDSE_PYTHON,
                               platform: str = CDSE_PLATFORM) -> Path:
    """Fetch the onnxruntime wheel for another interpreter with pip (PyPI only, no dependencies)."""
    if version is None:
        import onnxruntime

        version = onnxruntime.__version__
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
        "--platform", platform, "--python-version", python, "--implementation", "cp",
        "--dest", str(dest), f"onnxruntime=={version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(Path(dest).glob(f"onnxruntime-{version}-*.whl"))
    if done.returncode or not wheels:
        raise ArchiveBuildError(
            f"pip could not fetch onnxruntime=={version} for Python {python} on {platform}:\n{done.stderr[-2000:]}\n"
            f"Pick a version that has such a wheel (--onnxruntime-version) or pass --onnxruntime-from <wheel>"
        )
    return wheels[-1]


def _onnxruntime_entries(source: Path) -> list:
    """(path or (zip, member), arcname) pairs for onnxruntime from a wheel or an installed package directory."""
    source = Path(source)
    if source.suffix == ".whl":
        wheel = zipfile.ZipFile(source)
        return [((wheel, name), name) for name in sorted(wheel.namelist()) if not name.endswith("/")]
    package = source if source.name == "onnxruntime" else source / "onnxruntime"
    if not (package / "__init__.py").is_file():
        raise ArchiveBuildError(f"{source} is neither an onnxruntime wheel nor a directory holding the onnxruntime package")
    entries = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            entries.append((path, str(Path("onnxruntime") / path.relative_to(package))))
    for info in sorted(package.parent.glob("onnxruntime-*.dist-info")):
        for path in sorted(info.rglob("*")):
            if path.is_file():
                entries.append((path, str(Path(info.name) / path.relative_to(info))))
    return entries


def _write(archive: zipfile.ZipFile, arcname: str, data: bytes, compress: bool = True) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def build_archive(
    output: Path,
    models: list = (DEFAULT_MODEL,),
    models_dir: Path = MODELS_DIR,
    onnxruntime_source: Path = None,
    include_onnxruntime: bool = True,
    onnxruntime_version: str = None,
    python: str = CDSE_PYTHON,
    platform: str = CDSE_PLATFORM,
    compress: bool = True,
) -> Path:
    """Write the archive to ``output`` (a ``.zip`` path or a directory) and return its path.

    ``onnxruntime_source`` is a wheel or a directory holding an installed
    ``onnxruntime`` package; when it is None and ``include_onnxruntime`` is
    true, the wheel for ``python``/``platform`` is downloaded from PyPI.
    """
    card_paths = [Path(models_dir) / f"{model}.json" for model in models]
    for path in card_paths:
        if not path.is_file():
            raise ArchiveBuildError(f"model card {path} not found; pass --models-dir or train the model first")
    first_card = json.loads(card_paths[0].read_text())
    output = Path(output)
    if output.suffix != ".zip":
        name = archive_name(first_card, python, platform)
        if not include_onnxruntime:
            name = f"{ARCHIVE_FOLDER}-{first_card['id']}-models-only.zip"
        output = output / name
    output.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        entries = [entry for path in card_paths for entry in _model_files(path)]
        runtime = None
        if include_onnxruntime:
            if onnxruntime_source is None:
                onnxruntime_source = download_onnxruntime_wheel(Path(tmp), onnxruntime_version, python, platform)
                runtime = {"source": "PyPI", "wheel": Path(onnxruntime_source).name}
            else:
                runtime = {"source": str(onnxruntime_source)}
            entries += _onnxruntime_entries(Path(onnxruntime_source))
        manifest = {
            "folder": ARCHIVE_FOLDER,
            "built_by": f"openeo-cloudmask {__version__} (python -m openeo_cloudmask.release.archive)",
            "models": {json.loads(p.read_text())["id"]: json.loads(p.read_text())["onnx_sha256"] for p in card_paths},
            "onnxruntime": runtime,
            "python": python if include_onnxruntime else "any",
            "platform": platform if include_onnxruntime else "any",
        }
        try:
            manifest["job_option"] = {"udf-dependency-archives": [dependency_archive_option(first_card["id"])]}
        except ReleaseError:  # no release URL: the entry is '<where the zip is uploaded>#cloudmask_deps'
            manifest["job_option"] = None
        with zipfile.ZipFile(output, "w") as archive:
            for source, arcname in entries:
                data = source[0].read(source[1]) if isinstance(source, tuple) else Path(source).read_bytes()
                _write(archive, arcname, data, compress)
            _write(archive, MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode(), compress)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openeo_cloudmask.release.archive", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help=f"model id (repeatable; default {DEFAULT_MODEL})")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--output", type=Path, default=REPO / "dist", help="zip path or directory (default dist/)")
    parser.add_argument("--python", default=CDSE_PYTHON, help=f"UDF runtime's Python (default {CDSE_PYTHON}, CDSE)")
    parser.add_argument("--platform", default=CDSE_PLATFORM, help=f"wheel platform tag (default {CDSE_PLATFORM})")
    parser.add_argument("--onnxruntime-version", help="default: the version installed here")
    parser.add_argument("--onnxruntime-from", type=Path, help="a wheel or installed package dir instead of PyPI")
    parser.add_argument("--no-onnxruntime", action="store_true", help="models only")
    args = parser.parse_args(argv)
    try:
        path = build_archive(
            args.output, args.model or [DEFAULT_MODEL], args.models_dir, args.onnxruntime_from,
            not args.no_onnxruntime, args.onnxruntime_version, args.python, args.platform,
        )
    except ArchiveBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = (args.model or [DEFAULT_MODEL])[0]
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    try:
        print(f"upload it to {archive_url(model)}")
        print(f'job option: "udf-dependency-archives": ["{dependency_archive_option(model)}"]')
    except ReleaseError as exc:
        print(f'job option: "udf-dependency-archives": ["<the URL you upload it to>#{ARCHIVE_FOLDER}"] ({exc})')
    return 0


if __name__ == "__main__":
    sys.exit(main())
