"""openeo-driver tests run only in the driver environment (``make test-driver``, ``.venv-driver``).

openeo-driver pins an older pystac than openeo-processes-dask needs, so it
lives in its own virtualenv; in the main environment this folder is skipped
at collection (nothing here is imported there).
"""

import importlib.util

if importlib.util.find_spec("openeo_driver") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    import os
    from pathlib import Path

    # The dummy backend's own config (basic auth john/john123), before anything reads the backend config.
    os.environ.setdefault(
        "OPENEO_BACKEND_CONFIG",
        str(Path(importlib.util.find_spec("openeo_driver").origin).parent / "dummy" / "dummy_config.py"),
    )
