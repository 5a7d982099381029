"""Peak memory of the UDF on one ``apply_neighborhood`` chunk, each run in a fresh interpreter.

    python -m openeo_cloudmask.release.memory_probe '{"udf_path": ..., "chunk_px": 1024, "dates": 12, ...}'

The child (this module's :func:`run_probe`) builds one float32 chunk of the card's
bands (what geopyspark hands a UDF), runs the UDF code through
``openeo.udf.run_udf_code`` as a backend does, and prints one JSON line:
``resource.ru_maxrss`` before the call (``baseline_rss_mib``: interpreter, numpy,
xarray, openeo and the chunk) and after it (``peak_rss_mib``: the whole process's
peak, which is what ``python-memory`` must hold). The parent,
:func:`measure_memory`, starts one child per date count and writes the record
that sizes ``python-memory`` (see :mod:`.udp_build`).

This measures memory, not speed: the numbers do not depend on a busy host.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from openeo_cloudmask.release.settings import ReleaseError


def run_probe(args: dict) -> dict:
    import numpy as np
    import xarray as xr
    from openeo.udf import UdfData, XarrayDataCube
    from openeo.udf.run_code import run_udf_code

    rng = np.random.default_rng(0)
    n, dates = args["chunk_px"], args["dates"]
    dn = np.empty((dates, len(args["bands"]), n, n), dtype=np.float32)
    for i in range(dates):  # date by date: no big temporary inflates the baseline
        dn[i] = rng.integers(300, 6000, size=dn.shape[1:], dtype=np.int16)
    cube = xr.DataArray(dn, dims=("t", "bands", "y", "x"), coords={
        "t": np.datetime64("2023-04-01") + 5 * np.arange(dates).astype("timedelta64[D]"),
        "bands": args["bands"], "y": 5_000_000.0 - 10.0 * np.arange(n), "x": 500_000.0 + 10.0 * np.arange(n)})
    code = Path(args["udf_path"]).read_text()

    def mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    baseline = mib()
    out = run_udf_code(code=code, data=UdfData(datacube_list=[XarrayDataCube(cube)], user_context=args["context"]))
    result = out.get_datacube_list()[0].get_array()
    if result.shape[0] != dates:
        raise SystemExit(f"the UDF returned {result.shape}, expected {dates} dates")
    return {"dates": dates, "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(mib(), 1),
            "input_mib": round(dn.nbytes / 2**20, 1)}


def _measure_once(args: dict, threads: int) -> dict:
    env = {**os.environ, "OPENEO_CLOUDMASK_ORT_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "openeo_cloudmask.release.memory_probe", json.dumps(args)],
                          capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise ReleaseError(f"memory measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(card: dict, udf_code: str, design_dates: int, threads: int, chunk_px: int,
                   dates=None, context: dict = None) -> dict:
    """Peak RSS of a fresh Python running ``udf_code`` on one chunk, for 1, 12 and ``design_dates`` dates.

    The chunk is ``chunk_px`` square (the UDP's ``size + 2 * overlap``, which udp_build
    asks the engine for); onnxruntime runs ``threads`` threads, as the UDP sets them.
    """
    dates = sorted(set(dates or (1, 12, design_dates)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "udf.py"
        path.write_text(udf_code)
        args = {"chunk_px": chunk_px, "bands": list(card["input"]["bands"]), "udf_path": str(path),
                "context": context or {}}
        runs = [_measure_once({**args, "dates": n}, threads) for n in dates]
    import onnxruntime

    return {
        "model": card["id"],
        "onnx_sha256": card["onnx_sha256"],
        "chunk_px": chunk_px,
        "ort_threads": threads,
        "design_dates": design_dates,
        "bands": list(card["input"]["bands"]),
        "dtype": "float32",
        "runs": runs,
        "python": ".".join(map(str, sys.version_info[:3])),
        "onnxruntime": onnxruntime.__version__,
        "how": "make udp MEASURE=1: resource.ru_maxrss of a fresh interpreter that runs the self-contained UDF "
               "through openeo.udf.run_udf_code on one random float32 chunk (memory, not speed)",
    }


if __name__ == "__main__":
    print(json.dumps(run_probe(json.loads(sys.argv[1]))))
