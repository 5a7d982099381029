"""Shared fixtures: the tiny plumbing model, the real model, and the shared data folder."""

import os
from pathlib import Path

import pytest

from tiny_model import TINY_MODEL_ID, build_tiny_model

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("OPENEO_CLOUDMASK_SHARED_DATA", REPO.parent / "shared" / "data"))

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared Sentinel-2 data not found at {SHARED_DATA}"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared Sentinel-2 data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Directory holding the tiny plumbing model (see tests/tiny_model.py)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_context(tiny_model_dir) -> dict:
    return {"model": TINY_MODEL_ID, "model_dir": str(tiny_model_dir)}
