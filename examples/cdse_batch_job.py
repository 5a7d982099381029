"""CDSE: the composite as a batch job with explicit job options and GeoTIFF output.

    python examples/cdse_batch_job.py --print   # the POST /jobs request body, built offline
    python examples/cdse_batch_job.py           # log in, create, start and wait; download the results

The UDP already carries default job options; the ones given here override them
one by one (``python-memory`` for longer time series, ``max-executors`` for cost).
"""

import sys

from openeo_cloudmask.client_workflows import load_sentinel2, monthly_composite, run_example
from openeo_cloudmask.udp import dependency_archive_option, udp_namespace_url

TITLE = "openeo-cloudmask monthly composite"
JOB_OPTIONS = {
    "executor-memory": "2G",
    "python-memory": "5000m",  # the UDF's memory grows with the dates per chunk; see docs/CDSE.md
    "max-executors": 10,
    "udf-dependency-archives": [dependency_archive_option()],
}


def build(connection=None):
    s2 = load_sentinel2(connection, temporal_extent=["2023-04-01", "2023-10-01"])
    mask = s2.process("cloud_mask", namespace=udp_namespace_url(), data=s2, processing_level="L2A")
    return monthly_composite(s2, mask).save_result(format="GTiff")


def job_request(cube) -> dict:
    """What ``connection.create_job(cube, title=TITLE, job_options=JOB_OPTIONS)`` POSTs to ``/jobs``."""
    return {"title": TITLE, "process": {"process_graph": cube.flat_graph()}, "job_options": JOB_OPTIONS}


def main(argv=None) -> int:
    def run(cube, connection):
        job = connection.create_job(cube, title=TITLE, job_options=JOB_OPTIONS)
        job.start_and_wait()
        job.get_results().download_files("composite")

    return run_example(build, run, argv, document=job_request)


if __name__ == "__main__":
    sys.exit(main())
