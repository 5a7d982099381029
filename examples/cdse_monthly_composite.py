"""CDSE: a monthly cloud-free median composite, masked with the ``cloud_mask`` UDP.

    python examples/cdse_monthly_composite.py --print   # the process graph, built offline
    python examples/cdse_monthly_composite.py           # log in to CDSE and run it as a batch job

Every pixel the mask does not call clear (1) -- cloud shadow, semi-transparent
cloud, cloud and missing -- is dropped before the monthly median.
"""

import sys

from openeo_cloudmask.client_workflows import cloud_mask_udp, job_options, load_sentinel2, monthly_composite, run_example


def build(connection=None, namespace="user"):
    s2 = load_sentinel2(connection)
    mask = cloud_mask_udp(s2, namespace=namespace, processing_level="L2A")
    # s2.mask(mask != clear) then aggregate_temporal_period(period="month", reducer="median")
    return monthly_composite(s2, mask)


def main(argv=None) -> int:
    def run(cube, _):
        cube.execute_batch("composite.nc", out_format="netCDF", title="monthly cloud-free composite",
                           job_options=job_options())

    return run_example(build, run, argv)


if __name__ == "__main__":
    sys.exit(main())
