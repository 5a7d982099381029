"""The benchmark suite's smoke version: every section runs and writes well-formed outputs.

It uses the tiny plumbing model, so no number is meaningful and nothing here
asserts on timing: only that RESULTS.md, results.json and the plot exist and
hold every section with sane values.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ukis_csmask")
pytest.importorskip("s2cloudless")
pytest.importorskip("dask.distributed")
pytest.importorskip("matplotlib")

from tiny_model import TINY_MODEL_ID  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

SECTIONS = ("throughput", "dask", "memory", "scaling", "profile", "variants", "accuracy")
METHODS = {"ours_engine", "ours_raw_inference", "brightness_threshold", "ukis_csmask", "s2cloudless_10m",
           "s2cloudless_160m"}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("bench")
    # The door as a user opens it: `python -m benchmarks.run` from the repository root.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out), "--model", TINY_MODEL_ID,
         "--model-dir", str(tiny_model_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_outputs_exist(smoke_results):
    out, results = smoke_results
    assert (out / "RESULTS.md").read_text().startswith("# Benchmarks")
    png = (out / "throughput_vs_accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert results["kind"] == "smoke"
    assert all(results[s] for s in SECTIONS), [s for s in SECTIONS if not results[s]]


@pytest.mark.slow
def test_throughput_rows_are_well_formed(smoke_results):
    _, results = smoke_results
    rows = results["throughput"]["rows"]
    assert {r["method"] for r in rows} == METHODS
    for row in rows:
        assert _positive(row["mpx_per_s"]) and _positive(row["median_s"]), row
        assert len(row["seconds"]) == row["repeats"]
        assert _positive(row["ours_engine_over_this_same_scene"])
    assert results["machine"]["nproc"] >= 1 and results["machine"]["cpu_model"]


@pytest.mark.slow
def test_memory_scaling_profile_and_variants(smoke_results):
    _, results = smoke_results
    for row in results["memory"]["by_chunk"] + results["memory"]["by_scene"]:
        assert row["peak_mib"] >= row["baseline_mib"] > 0
    assert math.isfinite(results["scaling"]["time_vs_pixels_loglog_exponent"])
    shares = results["profile"]["shares"]
    assert set(shares) == {"preparation", "inference", "blending"}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert results["profile"]["seconds"]["session_calls"] >= 1
    assert all(0.0 < r["agreement_with_default"] <= 1.0 for r in results["profile"]["window_sweep"])
    fp32 = results["variants"]["rows"][0]
    assert fp32["variant"] == "fp32" and _positive(fp32["mpx_per_s"])
    for row in results["variants"]["rows"][1:]:
        assert "error" in row or 0.0 <= row["pixel_agreement"] <= 1.0
    assert all(0.0 <= r["overhead_vs_engine"] + 1 for r in results["dask"]["rows"])
