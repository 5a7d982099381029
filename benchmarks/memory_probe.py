"""Peak memory of the engine per chunk, each measurement in a fresh process.

    python -m benchmarks.memory_probe --scene 4096 --chunk 1024 --model cloudmask-s2-4band

The child process builds the scene (uint16, in memory), loads the model and
runs one small warm-up chunk, then records its resident set size: that is the
*baseline*. It then resets the kernel's peak-RSS counter (writing ``5`` to
``/proc/self/clear_refs``, Linux >= 4.0) and masks the whole scene chunk by
chunk (each chunk with a halo of the card's overlap, as ``apply_neighborhood``
hands it over) through ``mask_cube``. The reported number is the new peak
(``VmHWM``) minus the baseline: the memory the engine itself needs on top of
its input and its model. If the peak counter cannot be reset, ``ru_maxrss``
is used and the baseline is the RSS before the run (flagged in the output).

The parent (:func:`measure`) starts one child per configuration and parses
the JSON line it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(scene: int, chunk: int, model_id: str, model_dir) -> dict:
    """Runs in the child: see the module docstring. Returns MiB figures."""
    import numpy as np

    from benchmarks.benchmark_scenes import four_band_scene
    from benchmarks.masking_methods import THREADS, dn_cube
    from openeo_cloudmask.udf import cloud_mask as engine

    os.environ[engine.THREADS_ENV] = str(THREADS)
    context = {"model": model_id, "model_dir": model_dir}
    dn, _ = four_band_scene(scene)
    cube = dn_cube(dn)
    model = engine.load_model(model_id, model_dir, THREADS)
    halo = model.overlap
    engine.mask_cube(cube.isel(y=slice(0, 64), x=slice(0, 64)), context)  # warm-up: session arenas exist
    out = np.zeros((scene, scene), dtype=np.uint8)
    out.fill(1)  # touch the output pages now, so the scene-sized result is part of the baseline
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    for y in range(0, scene, chunk):
        for x in range(0, scene, chunk):
            y0, x0 = max(0, y - halo), max(0, x - halo)
            y1, x1 = min(scene, y + chunk + halo), min(scene, x + chunk + halo)
            mask = engine.mask_cube(cube.isel(y=slice(y0, y1), x=slice(x0, x1)), context).values
            out[y : y + chunk, x : x + chunk] = mask[0, y - y0 : y - y0 + chunk, x - x0 : x - x0 + chunk]
    if reset:
        peak = _status_kib("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "scene": scene,
        "chunk": chunk,
        "halo": halo,
        "baseline_mib": round(baseline / 1024, 1),
        "peak_mib": round(peak / 1024, 1),
        "engine_peak_mib": round((peak - baseline) / 1024, 1),
        "peak_counter_reset": reset,
    }


def measure(scene: int, chunk: int, model_id: str, model_dir, timeout: float = 300) -> dict:
    """Run :func:`probe` in a fresh Python process and return its result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "benchmarks.memory_probe", "--scene", str(scene), "--chunk", str(chunk),
               "--model", model_id]
    if model_dir is not None:
        command += ["--model-dir", str(model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {command} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="peak RSS of the engine for one scene and chunk size")
    parser.add_argument("--scene", type=int, required=True, help="scene side in pixels")
    parser.add_argument("--chunk", type=int, required=True, help="chunk side in pixels")
    parser.add_argument("--model", default="cloudmask-s2-4band")
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.scene, args.chunk, args.model, args.model_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
