"""Building blocks of the CDSE client examples (``examples/cdse_*.py``), built offline or online.

Every function returns an ``openeo`` ``DataCube`` whose process graph is the same
with or without a connection: pass ``connection=None`` to build and inspect a
graph offline (no account, no network), or a connection from
``openeo.connect("openeo.dataspace.copernicus.eu").authenticate_oidc()`` to run it.

The UDP is called by ``namespace``: ``"user"`` once ``openeo-cloudmask publish`` has
stored it in your account, or its URL once released
(:func:`openeo_cloudmask.release.settings.udp_namespace_url`). Either way the job
needs :func:`job_options` (a stored UDP keeps no default job options).
"""

from __future__ import annotations

import argparse
import json
import sys

from openeo.processes import array_element, neq
from openeo.rest.datacube import DataCube

from openeo_cloudmask.udf.cloud_mask import CLEAR, DEFAULT_MODEL  # noqa: F401  (CLEAR: the class table)

BACKEND = "openeo.dataspace.copernicus.eu"
#: A small area (Ghent, Belgium; about 350 x 220 px at 10 m) and one summer.
SPATIAL_EXTENT = {"west": 3.68, "south": 51.03, "east": 3.73, "north": 51.05}
TEMPORAL_EXTENT = ["2023-06-01", "2023-09-01"]
#: The bands the model reads (its card's ``input.bands``).
BANDS = ["B02", "B03", "B04", "B08"]


def load_sentinel2(connection=None, spatial_extent=None, temporal_extent=None, bands=None) -> DataCube:
    """``SENTINEL2_L2A`` with the model's bands; offline when ``connection`` is None."""
    return DataCube.load_collection(
        "SENTINEL2_L2A", connection=connection, spatial_extent=spatial_extent or SPATIAL_EXTENT,
        temporal_extent=temporal_extent or TEMPORAL_EXTENT, bands=bands or BANDS,
        fetch_metadata=connection is not None,
    )


def committed_udp() -> dict:
    """``process_graphs/cloud_mask.json``: the self-contained UDP that ``make udp`` builds."""
    from importlib import resources

    return json.loads((resources.files("openeo_cloudmask.process_graphs") / "cloud_mask.json").read_text())


def job_options() -> dict:
    """The job options the UDP needs (its ``default_job_options``): pass them with every batch job."""
    return dict(committed_udp()["default_job_options"])


def self_contained_udf() -> str:
    """The UDF code of the UDP: ``udf/cloud_mask.py`` with the model and its card embedded."""
    (node,) = committed_udp()["process_graph"].values()
    return node["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]["udf"]


def cloud_mask_udp(s2: DataCube, namespace: str = "user", **arguments) -> DataCube:
    """Call the ``cloud_mask`` UDP (``connection.datacube_from_process`` does the same online)."""
    return s2.process("cloud_mask", namespace=namespace, data=s2, **arguments)


def cloud_mask_inline(s2: DataCube, size: int, overlap: int, model: str = DEFAULT_MODEL, **context) -> DataCube:
    """The self-contained UDF itself in ``apply_neighborhood``: what the UDP does, spelled out."""
    import openeo

    udf = openeo.UDF(self_contained_udf(), runtime="Python", context={"model": model, **context})
    return s2.apply_neighborhood(
        process=udf,
        size=[{"dimension": "x", "value": size, "unit": "px"}, {"dimension": "y", "value": size, "unit": "px"},
              {"dimension": "t", "value": None}],
        overlap=[{"dimension": "x", "value": overlap, "unit": "px"}, {"dimension": "y", "value": overlap, "unit": "px"}],
    )


def not_clear(mask: DataCube) -> DataCube:
    """True where the one-band mask (band ``cloud_mask``) is anything but clear (1)."""
    return mask.reduce_dimension(dimension="bands", reducer=lambda bands: neq(array_element(bands, index=0), CLEAR))


def monthly_composite(s2: DataCube, mask: DataCube, reducer: str = "median") -> DataCube:
    """Drop every pixel that is not clear, then reduce each calendar month."""
    return s2.mask(not_clear(mask)).aggregate_temporal_period(period="month", reducer=reducer)


def run_example(build, run, argv=None, document=None) -> int:
    """The command line every ``examples/cdse_*.py`` shares.

    ``--print`` prints the request built offline (no account, no network):
    ``document(cube)``, by default the process graph. Otherwise it logs in to
    CDSE and calls ``run(cube, connection)`` on the cube built online.
    ``--namespace`` (default ``user``: the UDP ``openeo-cloudmask publish`` stored)
    is passed to ``build`` as ``namespace``, for examples that call the UDP.
    """
    import inspect

    import openeo

    parser = argparse.ArgumentParser()
    parser.add_argument("--print", action="store_true", help="print the request built offline and exit")
    parser.add_argument("--namespace", default="user", help="where the UDP is: 'user' (published) or its URL")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    extra = {"namespace": args.namespace} if "namespace" in inspect.signature(build).parameters else {}
    if args.print:
        print(json.dumps((document or (lambda cube: cube.flat_graph()))(build(**extra)), indent=2))
        return 0
    connection = openeo.connect(BACKEND).authenticate_oidc()
    run(build(connection, **extra), connection)
    return 0
