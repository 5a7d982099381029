"""Generate ``process_graphs/cloud_mask.json`` (the ``cloud_mask`` UDP) from its sources.

    python process_graphs/build_udp.py            # regenerate (self-contained: the model inside the UDF code)
    python process_graphs/build_udp.py --measure  # measure the UDF's memory per chunk first (new model or window)
    python process_graphs/build_udp.py --check    # exit 1 if the committed file is out of date

All logic lives in :mod:`openeo_cloudmask.release.udp_build`.
"""

import sys

from openeo_cloudmask.release.udp_build import main

if __name__ == "__main__":
    sys.exit(main())
