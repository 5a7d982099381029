"""``openeo-cloudmask publish``: store the self-contained ``cloud_mask`` UDP in your account on an openEO backend.

    openeo-cloudmask publish --dry-run                  # write ./cloud_mask.json only
    openeo-cloudmask publish                            # CDSE, OIDC login as the openeo client always does
    openeo-cloudmask publish --backend URL --auth basic --username NAME   # password from $OPENEO_PASSWORD

The UDP is the one ``make udp`` commits (:mod:`.udp_build`, self-contained: model
and card inside the UDF code, so nothing needs hosting). It is stored with
``Connection.save_user_defined_process`` and read back to check that the backend
kept it unchanged. A UDP stored in an account keeps no ``default_job_options``
(openeo-python-driver stores id, process graph, parameters, returns, summary,
description, links): the lines printed at the end carry the job options to pass.
A backend that refuses the UDP (request size, authentication) gets one line that
names the fix, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from openeo_cloudmask.release.settings import MEMORY_PATH, MODELS_DIR, UDP_ID, ReleaseError
from openeo_cloudmask.udf.cloud_mask import DEFAULT_MODEL

CDSE = "openeo.dataspace.copernicus.eu"
PASSWORD_ENV = "OPENEO_PASSWORD"
#: The fields an openEO backend keeps of a UDP stored in an account (openeo-python-driver's UserDefinedProcessMetadata).
STORED_FIELDS = ("id", "process_graph", "parameters", "returns", "summary", "description", "links")


class PublishError(ReleaseError):
    """The backend refused the UDP, or kept something else; the message is one line that names the fix."""


def refusal(exc: Exception, size: int, backend: str) -> PublishError:
    """One line for an error the openeo client raised while storing or reading the UDP."""
    status = getattr(exc, "http_status_code", None)
    code = getattr(exc, "code", None) or ""
    message = " ".join(str(getattr(exc, "message", None) or exc).split())[:300]
    if status == 413:
        return PublishError(
            f"{backend} refused the UDP as too large ({size / 2**20:.2f} MiB; openEO backends take up to 2 MiB per "
            f"request): ship a smaller model, or publish the archive form from a release URL (docs/CDSE.md)"
        )
    if status in (401, 403) or "Auth" in code or "Token" in code or "Credentials" in code:
        return PublishError(
            f"{backend} refused the login ({status} {code}: {message}): log in with --auth oidc, or --auth basic "
            f"--username NAME with the password in ${PASSWORD_ENV}"
        )
    return PublishError(f"{backend} refused the UDP ({status} {code}: {message})")


def connect(backend: str, auth: str = "oidc", username: str = None, password: str = None):
    """An authenticated ``openeo.Connection``: OIDC (device flow or refresh token) or HTTP basic."""
    import openeo
    from openeo.rest import OpenEoRestError

    connection = openeo.connect(backend)
    try:
        if auth == "basic":
            connection.authenticate_basic(username, password if password is not None else os.environ.get(PASSWORD_ENV))
        elif auth == "oidc":
            connection.authenticate_oidc()
    except OpenEoRestError as exc:
        raise refusal(exc, 0, backend) from None
    return connection


def publish(connection, udp: dict) -> dict:
    """Store ``udp`` in the connection's account and return what the backend gives back, checked unchanged."""
    from openeo.rest import OpenEoRestError

    backend = getattr(connection, "_orig_url", None) or connection.root_url
    size = len(json.dumps(udp).encode())
    try:
        connection.save_user_defined_process(
            UDP_ID, process_graph=udp["process_graph"], parameters=udp["parameters"], summary=udp.get("summary"),
            description=udp.get("description"), returns=udp.get("returns"), categories=udp.get("categories"),
            links=udp.get("links"),
        )
        stored = connection.user_defined_process(UDP_ID).describe()
    except OpenEoRestError as exc:
        raise refusal(exc, size, backend) from None
    changed = [key for key in STORED_FIELDS if key in udp and stored.get(key) != udp[key]]
    if changed:
        raise PublishError(f"{backend} stored the UDP with other {changed}: report it to the backend's operators")
    return stored


def usage_lines(udp: dict, backend: str) -> str:
    """What the user writes next, with the job options a stored UDP does not keep."""
    options = json.dumps(udp.get("default_job_options", {}))
    return "\n".join([
        f"stored UDP '{UDP_ID}' in your account on {backend}; call it with namespace='user':",
        f"    mask = cube.process('{UDP_ID}', namespace='user', data=cube, processing_level='L2A')",
        f"    mask = connection.datacube_from_process('{UDP_ID}', namespace='user', data=cube)",
        "a stored UDP keeps no default job options; pass them to each batch job:",
        f"    mask.execute_batch('cloud_mask.nc', out_format='netCDF', job_options={options})",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=CDSE, help=f"openEO backend URL (default {CDSE})")
    parser.add_argument("--auth", choices=("oidc", "basic", "none"), default="oidc",
                        help=f"how to log in (default oidc; basic takes --username and ${PASSWORD_ENV})")
    parser.add_argument("--username", help="user name for --auth basic")
    parser.add_argument("--dry-run", action="store_true", help="write the UDP JSON only; no backend, no login")
    parser.add_argument("--udp-output", type=Path, default=Path(f"{UDP_ID}.json"), metavar="PATH",
                        help=f"where --dry-run writes the UDP (default ./{UDP_ID}.json)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model id (default {DEFAULT_MODEL})")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder holding the model and its card")


def run(args: argparse.Namespace) -> int:
    """The ``publish`` command; errors are one line on stderr and exit code 2."""
    from openeo_cloudmask.release.udp_build import generate, render

    try:
        udp = generate(args.model, args.models_dir, MEMORY_PATH)
        text = render(udp)
        if args.dry_run:
            args.udp_output.write_text(text)
            print(f"wrote {args.udp_output} ({len(text.encode()) / 2**20:.2f} MiB, self-contained: model "
                  f"{args.model} inside the UDF code)")
            return 0
        connection = connect(args.backend, args.auth, args.username)
        publish(connection, udp)
    except ReleaseError as exc:
        print(f"openeo-cloudmask: error: {exc}", file=sys.stderr)
        return 2
    print(usage_lines(udp, args.backend))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="openeo-cloudmask publish", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
