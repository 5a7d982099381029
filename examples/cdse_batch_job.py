"""CDSE: the composite as a batch job with explicit job options and GeoTIFF output.

    python examples/cdse_batch_job.py --print   # the POST /jobs request body, built offline
    python examples/cdse_batch_job.py           # log in, create, start and wait; download the results

The UDP already carries default job options; the ones given here override them
one by one (``python-memory`` for longer time series, ``max-executors`` for cost).
"""

import sys

from openeo_cloudmask.client_workflows import cloud_mask_udp, job_options, load_sentinel2, monthly_composite, run_example

TITLE = "openeo-cloudmask monthly composite"
JOB_OPTIONS = {
    **job_options(),  # what the UDP needs: onnx_deps, python-memory for 73 dates per chunk, one CPU per task
    "executor-memory": "2G",
    "max-executors": 10,
}


def build(connection=None, namespace="user"):
    s2 = load_sentinel2(connection, temporal_extent=["2023-04-01", "2023-10-01"])
    mask = cloud_mask_udp(s2, namespace=namespace, processing_level="L2A")
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
