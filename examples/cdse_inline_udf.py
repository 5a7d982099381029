"""CDSE: the same monthly composite with the UDF inline instead of the UDP.

Use this to run a modified ``udf/cloud_mask.py`` or another model. You then set
what the UDP sets for you: the chunking (``apply_neighborhood`` size and
overlap), the UDF context and the job options (memory, dependency archive).

    python examples/cdse_inline_udf.py --print   # the process graph, built offline
    python examples/cdse_inline_udf.py           # log in to CDSE and run it as a batch job
"""

import sys

import openeo

from openeo_cloudmask.client_workflows import load_sentinel2, monthly_composite, run_example
from openeo_cloudmask.udp import dependency_archive_option, udf_path

MODEL = "cloudmask-s2-4band"
#: The model card's tiling.recommended_chunk and recommended_overlap (a test checks them against the card).
SIZE, OVERLAP = 512, 256
JOB_OPTIONS = {
    "python-memory": "2048m",  # room for ~100 dates per chunk; see docs/CDSE.md "Job options and memory"
    "udf-dependency-archives": [dependency_archive_option(MODEL)],  # <url>#cloudmask_deps: model + onnxruntime
}


def build(connection=None):
    s2 = load_sentinel2(connection)
    udf = openeo.UDF.from_file(udf_path(), runtime="Python", context={"model": MODEL, "processing_level": "L2A"})
    mask = s2.apply_neighborhood(
        process=udf,
        size=[{"dimension": "x", "value": SIZE, "unit": "px"}, {"dimension": "y", "value": SIZE, "unit": "px"},
              {"dimension": "t", "value": None}],  # t: null = every chunk gets its full time series
        overlap=[{"dimension": "x", "value": OVERLAP, "unit": "px"}, {"dimension": "y", "value": OVERLAP, "unit": "px"}],
    )
    return monthly_composite(s2, mask)


def main(argv=None) -> int:
    def run(cube, _):
        cube.execute_batch("composite_inline.nc", out_format="netCDF", job_options=JOB_OPTIONS)

    return run_example(build, run, argv)


if __name__ == "__main__":
    sys.exit(main())
