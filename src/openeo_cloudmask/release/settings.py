"""The one hosting setting, and every name and URL derived from it.

``RELEASE_URL`` is where a release's files are published (the dependency archive
and the UDP JSON), a pattern with ``{version}``. The project has no public home
yet, so it is ``None``; ``OPENEO_CLOUDMASK_RELEASE_URL`` sets it for one build
(staging, a fork). Without it, nothing that needs hosting can be built: the UDP
is built self-contained (model embedded, see :mod:`.udp_build`), and asking for
an archive URL raises :class:`ReleaseError` with the line to set.

The namespace URL users pass to call the UDP once it is released is the UDP's
copy in the ESA APEx algorithm catalogue (:data:`APEX_UDP_URL`), which needs no
hosting of ours, unless ``RELEASE_URL`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from openeo_cloudmask._version import __version__

UDP_ID = "cloud_mask"
#: THE hosting setting: ``"https://<host>/<path>/v{version}"``, or None while the project has no public home.
RELEASE_URL = None
RELEASE_URL_ENV = "OPENEO_CLOUDMASK_RELEASE_URL"

#: Where the UDP lives once the APEx entry (process_graphs/apex/) is merged into ESA-APEx/apex_algorithms.
APEX_PROVIDER = "openeo_cloudmask"
APEX_RAW_URL = "https://raw.githubusercontent.com/ESA-APEx/apex_algorithms/main/algorithm_catalog"
APEX_UDP_URL = f"{APEX_RAW_URL}/{APEX_PROVIDER}/{UDP_ID}/openeo_udp/{UDP_ID}.json"

#: The UDF runtime the archive's onnxruntime is built for (CDSE default since 2025-10-28).
CDSE_PYTHON = "3.11"
CDSE_PLATFORM = "manylinux_2_28_x86_64"

REPO = Path(__file__).resolve().parents[3]
MODELS_DIR = REPO / "models"
PROCESS_GRAPHS = REPO / "process_graphs"
UDP_PATH = PROCESS_GRAPHS / f"{UDP_ID}.json"
MEMORY_PATH = PROCESS_GRAPHS / f"{UDP_ID}.memory.json"
APEX_DIR = PROCESS_GRAPHS / "apex"


class ReleaseError(RuntimeError):
    """A release input is missing or a setting is unset; the message says what to set or run."""


def release_url(version: str = __version__) -> str:
    """``RELEASE_URL`` (or its environment override) for ``version``; refuses when unset or a placeholder."""
    base = os.environ.get(RELEASE_URL_ENV) or RELEASE_URL
    if not base:
        raise ReleaseError(
            f"no release URL is set: set {RELEASE_URL_ENV}=https://<host>/<path>/v{{version}} (or RELEASE_URL in "
            f"openeo_cloudmask/release/settings.py) to build the archive form; the self-contained UDP needs none"
        )
    if not base.startswith("https://") or "OWNER" in base:
        raise ReleaseError(f"{RELEASE_URL_ENV} {base!r} is not a real https URL: point it at the host of the release")
    return base.format(version=version).rstrip("/")


def archive_name(model: str, python: str = CDSE_PYTHON, platform: str = CDSE_PLATFORM) -> str:
    """File name of the dependency archive for one model id (or card) and one UDF runtime."""
    from openeo_cloudmask.udf.cloud_mask import ARCHIVE_FOLDER

    model = model["id"] if isinstance(model, dict) else model
    return f"{ARCHIVE_FOLDER}-{model}-cp{python.replace('.', '')}-{platform}.zip"


def archive_url(model: str) -> str:
    """Where the dependency archive for ``model`` is published (needs the release URL)."""
    return f"{release_url()}/{archive_name(model)}"


def dependency_archive_option(model: str) -> str:
    """The ``udf-dependency-archives`` entry of the archive form: ``<url>#cloudmask_deps``."""
    from openeo_cloudmask.udf.cloud_mask import ARCHIVE_FOLDER

    return f"{archive_url(model)}#{ARCHIVE_FOLDER}"


def udp_namespace_url() -> str:
    """What users pass as ``namespace`` once the UDP is released: our release if one is set, else APEx's copy."""
    if not (os.environ.get(RELEASE_URL_ENV) or RELEASE_URL):
        return APEX_UDP_URL
    return f"{release_url()}/{UDP_ID}.json"
