"""Moved to :mod:`openeo_cloudmask.release.archive`; this name stays for ``make archive``."""

import sys

from openeo_cloudmask.release.archive import *  # noqa: F401,F403
from openeo_cloudmask.release.archive import main

if __name__ == "__main__":
    sys.exit(main())
