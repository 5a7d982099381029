"""``python -m openeo_cloudmask``: the same command line as ``openeo-cloudmask``."""

import sys

from openeo_cloudmask.cli import main

sys.exit(main())
