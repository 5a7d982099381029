"""CDSE: the same monthly composite with the UDF inline instead of the UDP.

Use this to run a modified ``udf/cloud_mask.py`` or another model. You then set
what the UDP sets for you: the chunking (``apply_neighborhood`` size and
overlap), the UDF context and the job options (memory, dependency archive).

    python examples/cdse_inline_udf.py --print   # the process graph, built offline
    python examples/cdse_inline_udf.py           # log in to CDSE and run it as a batch job
"""

import sys

import openeo

from openeo_cloudmask.client_workflows import job_options, load_sentinel2, monthly_composite, run_example, self_contained_udf

MODEL = "cloudmask-s2-4band"
#: The model card's tiling.recommended_chunk and recommended_overlap (a test checks them against the card).
SIZE, OVERLAP = 512, 256
#: The UDP's own job options: onnxruntime from the public onnx_deps archive, python-memory for 73 dates per chunk
#: with >= 25 % headroom, one CPU (and one onnxruntime thread) per task; see docs/CDSE.md.
JOB_OPTIONS = job_options()


def build(connection=None):
    s2 = load_sentinel2(connection)
    # the self-contained UDF (model inside, ~1.4 MiB); for a modified UDF: openeo.UDF.from_file(your_file, ...)
    udf = openeo.UDF(self_contained_udf(), runtime="Python", context={"model": MODEL, "processing_level": "L2A"})
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
