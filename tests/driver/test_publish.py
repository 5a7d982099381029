"""``openeo-cloudmask publish`` against openeo-driver's dummy backend, served on 127.0.0.1.

The committed, self-contained UDP (``process_graphs/cloud_mask.json``, what
``publish --dry-run`` writes) is stored in an account, read back unchanged, and
the read-back document is then run through our own ``apply_neighborhood`` and
``run_udf`` (in the main environment, which has openeo-pg-parser-networkx) and
compared with the engine bit for bit. Refusals (size, login) are one line.
"""

import json
import subprocess
from pathlib import Path

import openeo
import pytest

from openeo_cloudmask.release import publish, settings, udp_build

REPO = Path(__file__).resolve().parents[2]
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"

_RUN_LOCALLY = r"""
import json, sys
import numpy as np, xarray as xr
from openeo_cloudmask.backend_plugin.registry import build_registry, run_process_graph
from openeo_cloudmask.udf import cloud_mask as engine
udp = json.load(open(sys.argv[1]))
rng = np.random.default_rng(5)
n = 300
cube = xr.DataArray(rng.integers(100, 7000, size=(2, 4, n, n + 40)).astype(np.uint16), dims=("t", "bands", "y", "x"),
                    coords={"t": np.array(["2024-05-01", "2024-05-11"], dtype="datetime64[ns]"),
                            "bands": ["B02", "B03", "B04", "B08"],
                            "y": 5_000_000.0 - 10 * np.arange(n), "x": 600_000.0 + 10 * np.arange(n + 40)})
result = run_process_graph(udp, build_registry(), {"data": cube})
expected = engine.mask_cube(cube, {})
same = bool(np.array_equal(result.transpose(*expected.dims).values, expected.values))
print(json.dumps({"identical": same, "shape": list(expected.shape)}))
"""


@pytest.fixture(scope="module")
def server():
    from conftest import serve_dummy_backend

    yield from serve_dummy_backend()


def test_publish_stores_the_udp_unchanged_and_it_runs_bit_identical(server, tmp_path, monkeypatch, capsys):
    committed = udp_build.generate()  # what publish --dry-run writes (and `make udp` commits)
    monkeypatch.setenv(publish.PASSWORD_ENV, "alice123")
    assert publish.main(["--backend", server, "--auth", "basic", "--username", "alice"]) == 0
    out = capsys.readouterr().out
    assert "namespace='user'" in out and "datacube_from_process" in out and "udf-dependency-archives" in out

    stored = openeo.connect(server).authenticate_basic("alice", "alice123").user_defined_process("cloud_mask").describe()
    for key in publish.STORED_FIELDS:
        if key in committed:
            assert stored[key] == committed[key], key
    if not MAIN_PYTHON.is_file():
        pytest.skip(f"{MAIN_PYTHON} missing (make test-main builds it): cannot run the read-back UDP locally")
    path = tmp_path / "stored.json"
    path.write_text(json.dumps(stored))
    done = subprocess.run([str(MAIN_PYTHON), "-c", _RUN_LOCALLY, str(path)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "OPENEO_CLOUDMASK_ORT_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["identical"] is True


def test_an_oversized_udp_is_refused_in_one_line(server):
    connection = openeo.connect(server).authenticate_basic("alice", "alice123")
    udp = json.loads(settings.UDP_PATH.read_text())
    udp["description"] = "x" * (2 * 1024 * 1024)
    with pytest.raises(publish.PublishError) as caught:
        publish.publish(connection, udp)
    message = str(caught.value)
    assert "\n" not in message and "too large" in message and "2 MiB" in message


def test_a_wrong_password_is_refused_in_one_line(server, monkeypatch, capsys):
    monkeypatch.setenv(publish.PASSWORD_ENV, "wrong")
    assert publish.main(["--backend", server, "--auth", "basic", "--username", "alice"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "refused the login" in line and "--auth" in line


def test_dry_run_writes_the_committed_udp(tmp_path, capsys):
    target = tmp_path / "cloud_mask.json"
    assert publish.main(["--dry-run", "--udp-output", str(target)]) == 0
    assert target.read_text() == udp_build.render(udp_build.generate())  # == the committed file: tests/test_udp.py
    assert len(target.read_bytes()) < 2 * 1024 * 1024 and "OWNER" not in target.read_text()
