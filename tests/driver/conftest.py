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


def serve_dummy_backend():
    """openeo-driver's dummy backend on 127.0.0.1 (a free port), as a generator: yields its URL, then stops it."""
    import threading

    from openeo_driver.dummy.dummy_backend import DummyBackendImplementation
    from openeo_driver.views import build_app
    from werkzeug.serving import make_server

    app = build_app(backend_implementation=DummyBackendImplementation())
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=10)
