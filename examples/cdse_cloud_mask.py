"""CDSE: the cloud mask alone, by calling the published ``cloud_mask`` UDP.

    python examples/cdse_cloud_mask.py --print   # the process graph, built offline (no account needed)
    python examples/cdse_cloud_mask.py           # log in to CDSE and run it as a batch job

Publish the UDP to your account first (``openeo-cloudmask publish``), or pass
``--namespace URL`` once it is released; the job options come from
``client_workflows.job_options()`` (see docs/CDSE.md).
"""

import sys

from openeo_cloudmask.client_workflows import cloud_mask_udp, job_options, load_sentinel2, run_example


def build(connection=None, namespace="user"):
    s2 = load_sentinel2(connection)  # SENTINEL2_L2A, bands B02, B03, B04, B08
    # One band "cloud_mask" per date: 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud, 5 missing.
    # Online, connection.datacube_from_process("cloud_mask", namespace=..., data=s2) is the same call.
    return cloud_mask_udp(s2, namespace=namespace, processing_level="L2A")


def main(argv=None) -> int:
    return run_example(build, lambda cube, _: cube.execute_batch("cloud_mask.nc", out_format="netCDF", title="cloud_mask",
                                                              job_options=job_options()), argv)


if __name__ == "__main__":
    sys.exit(main())
