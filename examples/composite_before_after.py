"""A cloud-free median composite with ``process_graphs/cloud_free_composite.json``, and a before/after PNG.

    python examples/composite_before_after.py [--data STACK.nc] [--out composite.png] [--model-dir DIR] [--model ID]

``--data`` is a NetCDF with a ``reflectance`` variable (t, bands, y, x), as in
the shared Sentinel-2 data (e.g. ``s2cloudmask_wright_stack30.nc``); without
it, three seeded demo scenes serve as dates. The graph runs through
openeo-pg-parser-networkx with this package's registry, the cube passed as
the graph parameter ``data``. The PNG shows the cloudiest date, a plain
median and the masked composite side by side; the cloud fraction the model
sees in each is printed and written into the titles.
"""

import argparse
import json
import sys
from importlib import resources

import numpy as np
import xarray as xr

from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph
from openeo_cloudmask.udf import cloud_mask as engine

GRAPH = resources.files("openeo_cloudmask.process_graphs") / "cloud_free_composite.json"


def load_stack(path) -> xr.DataArray:
    if path:
        return xr.open_dataset(path, chunks={}).reflectance
    from openeo_cloudmask.demo_scene import make_demo_scene

    scenes = [make_demo_scene(seed=seed, size=256).to_dataarray() for seed in (1, 2, 3)]
    return xr.concat([s.assign_coords(x=scenes[0].x, y=scenes[0].y) for s in scenes], dim="t")


def cloud_fraction(cube: xr.DataArray, context: dict) -> float:
    codes = engine.mask_cube(cube.fillna(0), context).values
    valid = codes != engine.MISSING
    return float(((codes >= engine.SHADOW) & (codes <= engine.CLOUD) & valid).sum() / max(valid.sum(), 1))


def rgb(cube: xr.DataArray) -> np.ndarray:
    image = np.stack([cube.sel(bands=b).values.astype(float) for b in ("B04", "B03", "B02")], axis=-1)
    return np.clip(np.nan_to_num(image / 3000.0), 0, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="composite_before_after.png")
    parser.add_argument("--model", default=engine.DEFAULT_MODEL)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--processing-level", default="L2A", choices=["L1C", "L2A"])
    args = parser.parse_args(argv)

    stack = load_stack(args.data)
    registry = build_registry(model_dir=args.model_dir)
    graph = json.loads(GRAPH.read_text())
    parameters = {"data": stack, "model": args.model, "processing_level": args.processing_level}
    composite = run_process_graph(graph, registry, parameters).compute()

    context = {"model": args.model, "model_dir": args.model_dir, "processing_level": args.processing_level}
    loaded = stack.load()
    per_date = [cloud_fraction(loaded.isel(t=i), context) for i in range(loaded.sizes["t"])]
    cloudiest = int(np.argmax(per_date))
    plain = loaded.median("t")
    panels = [
        (loaded.isel(t=cloudiest), f"cloudiest date ({per_date[cloudiest]:.0%} cloud)"),
        (plain, f"plain median ({cloud_fraction(plain, context):.0%} cloud)"),
        (composite, f"masked median ({cloud_fraction(composite, context):.0%} cloud)"),
    ]
    print(f"cloud fraction: dates mean {np.mean(per_date):.1%}, " + ", ".join(title for _, title in panels[1:]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for axis, (cube, title) in zip(axes, panels):
        axis.imshow(rgb(cube))
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle(f"cloud_free_composite with model {args.model}", fontsize=11)
    figure.tight_layout()
    figure.savefig(args.out, dpi=80)
    plt.close(figure)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
