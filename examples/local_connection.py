"""Run ``cloud_mask`` on your machine through the openeo client's ``LocalConnection``.

    python examples/local_connection.py [--model-dir DIR] [--model ID] [--size PX] [--workdir DIR]

It writes a small Sentinel-2-like NetCDF collection (the seeded demo scene,
two dates) into ``--workdir`` (a temporary folder by default), adds this
package's processes to the registry ``LocalConnection`` executes with, and
builds the job with the ordinary openeo client API: ``load_collection`` ->
``cloud_mask``. It prints the share of each class.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from openeo_cloudmask.backend_plugin.registry import install_into_local_connection
from openeo_cloudmask.demo_scene import make_demo_scene
from openeo_cloudmask.udf.cloud_mask import CLASS_CODES, DEFAULT_MODEL


def write_collection(folder: Path, size: int) -> Path:
    """A LocalConnection collection: one NetCDF, one variable per band, dims (t, y, x)."""
    scenes = [make_demo_scene(seed=seed, size=size).to_dataarray() for seed in (1, 2)]
    cube = xr.concat([s.assign_coords(x=scenes[0].x, y=scenes[0].y) for s in scenes], dim="t")
    cube = cube.assign_coords(t=np.array(["2024-06-01", "2024-06-11"], dtype="datetime64[ns]"))
    path = folder / "s2_demo.nc"
    cube.to_dataset(dim="bands").drop_attrs().to_netcdf(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--model-dir", default=None, help="folder with <model>.json and .onnx (default: the installed models)")
    parser.add_argument("--size", type=int, default=256, help="scene edge in pixels")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    from openeo.local import LocalConnection

    folder = Path(args.workdir or tempfile.mkdtemp(prefix="cloudmask-local-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = write_collection(folder, args.size)
    install_into_local_connection(model_dir=args.model_dir)

    connection = LocalConnection(str(folder))
    cube = connection.load_collection(str(path))
    masked = cube.process("cloud_mask", data=cube, model=args.model, output="classes")
    result = masked.execute()
    codes, counts = np.unique(result.values, return_counts=True)
    print(f"cloud_mask on {path.name} {dict(result.sizes)}:")
    for code, count in zip(codes, counts):
        print(f"  {int(code)} {CLASS_CODES[int(code)]:<24} {count / result.size:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
