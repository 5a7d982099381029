"""The ESA APEx algorithm-catalogue entry for ``cloud_mask``, ready for a pull request to ESA-APEx/apex_algorithms.

``process_graphs/apex/algorithm_catalog/`` mirrors the catalogue's layout::

    openeo_cloudmask/record.json                                  the provider record
    openeo_cloudmask/cloud_mask/records/cloud_mask.json           the algorithm (service) record
    openeo_cloudmask/cloud_mask/records/thumbnail.png             true colour beside the mask, real scene
    openeo_cloudmask/cloud_mask/benchmark_scenarios/cloud_mask.json
    openeo_cloudmask/cloud_mask/openeo_udp/cloud_mask.json        at PR time: process_graphs/cloud_mask.json

The records are generated (``make udp`` writes them with the UDP, :func:`write_entry`);
the UDP itself is not copied into the repository twice: :func:`assemble` builds the
complete tree for the pull request. The benchmark scenario's process graph is the one
a user runs (``examples/cdse_cloud_mask.py`` with the APEx namespace URL). The
thumbnail is made once from a real Sentinel-2 chip (On Cloud N, CC BY 4.0, in
``../shared/data``) masked by the engine: ``python -m openeo_cloudmask.release.apex --thumbnail``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from openeo_cloudmask.release.settings import (
    APEX_DIR, APEX_PROVIDER, APEX_RAW_URL, APEX_UDP_URL, REPO, UDP_ID, UDP_PATH,
)

CATALOG = APEX_DIR / "algorithm_catalog"
PROVIDER_DIR = CATALOG / APEX_PROVIDER
ALGORITHM_DIR = PROVIDER_DIR / UDP_ID
THUMBNAIL = ALGORITHM_DIR / "records" / "thumbnail.png"
THUMBNAIL_URL = f"{APEX_RAW_URL}/{APEX_PROVIDER}/{UDP_ID}/records/thumbnail.png"
CDSE_FEDERATION = "openeofed.dataspace.copernicus.eu"
#: The real scene behind the thumbnail (../shared/data), and its attribution.
THUMBNAIL_SCENE = "oncloudn_runtime_akny.nc"
THUMBNAIL_CREDIT = ("contains modified Copernicus Sentinel data 2020 (On Cloud N challenge chip 'akny', CC BY 4.0), "
                    "masked by openeo-cloudmask")
#: Record dates: the first entry. Bump ``UPDATED`` with each release of the entry.
CREATED = UPDATED = "2026-12-04T00:00:00Z"
CONTACT = {"name": "openeo-cloudmask maintainers", "organization": "openeo-cloudmask",
           "roles": ["principal investigator", "maintainer"]}


def provider_record() -> dict:
    return {
        "id": APEX_PROVIDER,
        "type": "Feature",
        "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"],
        "properties": {
            "created": CREATED, "updated": UPDATED, "type": "algorithm_provider", "title": "openeo-cloudmask",
            "description": "An open-source project that brings an AI cloud and cloud-shadow mask for Sentinel-2 "
                           "to openEO: one small ONNX model run as a UDF, a registered process, a CLI and a UDP.",
            "keywords": ["cloud mask", "Sentinel-2", "ONNX"],
            "language": {"code": "en-US", "name": "English (United States)"},
            "languages": [{"code": "en-US", "name": "English (United States)"}],
            "contacts": [CONTACT], "themes": [], "license": "Apache-2.0", "acl": {"admin": []},
        },
        "linkTemplates": [],
        "links": [
            {"rel": "logo-light", "type": "image/png", "title": "openeo-cloudmask", "href": THUMBNAIL_URL},
            {"rel": "logo-dark", "type": "image/png", "title": "openeo-cloudmask", "href": THUMBNAIL_URL},
        ],
    }


def algorithm_record(udp: dict, card: dict) -> dict:
    bands = ", ".join(card["input"]["bands"])
    description = (
        f"Cloud and cloud-shadow mask for Sentinel-2 L1C and L2A from a small convolutional network (ONNX, "
        f"model {card['id']} v{card['version']}) run as an openEO UDF. Input: {bands} as digital numbers. Output "
        "per pixel and date: KappaMask classes 1 clear, 2 cloud shadow, 3 semi-transparent cloud, 4 cloud, "
        "5 missing, or class probabilities, or cloud and shadow probabilities (cloud_detection). The model travels "
        "inside the UDF code (sha256 checked); onnxruntime comes from the public onnx_deps archive. The result does "
        "not depend on the chunking. Thumbnail: " + THUMBNAIL_CREDIT + "."
    )
    editor = (f"https://editor.openeo.org/?wizard=UDP&wizard~process={UDP_ID}&wizard~processUrl={APEX_UDP_URL}"
              f"&server=https://{CDSE_FEDERATION}")
    return {
        "id": UDP_ID,
        "type": "Feature",
        "conformsTo": ["https://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core",
                       "https://apex.esa.int/core/openeo-udp"],
        "geometry": None,
        "properties": {
            "created": CREATED, "updated": UPDATED, "type": "service",
            "title": "Sentinel-2 cloud and cloud-shadow mask (ONNX)", "description": description,
            "keywords": ["Sentinel-2"],
            "language": {"code": "en-US", "name": "English (United States)"},
            "languages": [{"code": "en-US", "name": "English (United States)"}],
            "contacts": [CONTACT],
            "themes": [{"concepts": [{"id": "Sentinel-2 MSI"}, {"id": "CLOUDS"}],
                        "scheme": "https://gcmd.earthdata.nasa.gov/kms/concepts/concept_scheme/sciencekeywords"}],
            "formats": [{"name": "GeoTIFF"}, {"name": "netCDF"}],
            "license": "Apache-2.0",
        },
        "linkTemplates": [],
        "links": [
            {"rel": "application", "type": "application/vnd.openeo+json;type=process",
             "title": "openEO Process Definition", "href": APEX_UDP_URL},
            {"rel": "service", "type": "application/json", "title": "CDSE openEO federation",
             "href": f"https://{CDSE_FEDERATION}"},
            {"rel": "platform", "type": "application/json", "title": "CDSE openEO federation",
             "href": "../../../../platform_catalog/cdse_openeo_federation.json"},
            {"rel": "provider", "type": "application/json", "title": "openeo-cloudmask", "href": "../../record.json"},
            {"rel": "webapp", "type": "text/html", "title": "OpenEO Web Editor", "href": editor},
            {"rel": "thumbnail", "type": "image/png", "title": "Thumbnail image", "href": THUMBNAIL_URL},
        ],
    }


def benchmark_scenarios() -> list:
    """One scenario: the graph ``examples/cdse_cloud_mask.py`` builds, calling the UDP at its APEx address."""
    from openeo_cloudmask.client_workflows import cloud_mask_udp, load_sentinel2

    s2 = load_sentinel2()
    graph = cloud_mask_udp(s2, namespace=APEX_UDP_URL, processing_level="L2A").flat_graph()
    return [{
        "id": UDP_ID,
        "type": "openeo",
        "description": "Cloud mask of a small L2A area (Ghent, Belgium) over one summer, with the UDP's default job "
                       "options; the graph of examples/cdse_cloud_mask.py.",
        "backend": CDSE_FEDERATION,
        "process_graph": graph,
    }]


def entry_files(udp: dict, card: dict) -> dict:
    """Relative path (under ``algorithm_catalog/``) -> JSON text, for every generated file of the entry."""
    text = lambda document: json.dumps(document, indent=2, ensure_ascii=False) + "\n"  # noqa: E731
    return {
        f"{APEX_PROVIDER}/record.json": text(provider_record()),
        f"{APEX_PROVIDER}/{UDP_ID}/records/{UDP_ID}.json": text(algorithm_record(udp, card)),
        f"{APEX_PROVIDER}/{UDP_ID}/benchmark_scenarios/{UDP_ID}.json": text(benchmark_scenarios()),
    }


def write_entry(udp: dict, card: dict, catalog: Path = CATALOG) -> list:
    written = []
    for relative, content in entry_files(udp, card).items():
        path = Path(catalog) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written


def assemble(target: Path) -> Path:
    """The complete ``algorithm_catalog/`` tree for the pull request, the UDP included, under ``target``."""
    target = Path(target) / "algorithm_catalog"
    shutil.copytree(CATALOG, target, dirs_exist_ok=True)
    udp_dir = target / APEX_PROVIDER / UDP_ID / "openeo_udp"
    udp_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(UDP_PATH, udp_dir / f"{UDP_ID}.json")
    return target


def make_thumbnail(scene: Path, output: Path = THUMBNAIL, size: int = 128) -> Path:
    """True colour beside the mask of a real chip, ``size`` px each, as a small PNG (our derived product)."""
    import numpy as np
    import xarray as xr
    from PIL import Image

    from openeo_cloudmask.quicklook import class_image, true_colour
    from openeo_cloudmask.udf.cloud_mask import mask_cube

    cube = xr.open_dataarray(scene).load()
    codes = mask_cube(cube, {}).values[0]
    rgb = true_colour(*(cube.sel(bands=band).values for band in ("B04", "B03", "B02")))
    step = max(1, codes.shape[0] // size)
    left = (np.clip(rgb[::step, ::step], 0, 1) * 255).astype(np.uint8)
    right = class_image(codes[::step, ::step])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(output, optimize=True)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openeo_cloudmask.release.apex", description=__doc__.splitlines()[0])
    parser.add_argument("--thumbnail", type=Path, metavar="DATA_DIR", nargs="?", const=REPO.parent / "shared" / "data",
                        help="remake the thumbnail from the real chip in DATA_DIR (default ../shared/data)")
    parser.add_argument("--assemble", type=Path, metavar="DIR", help="write the complete PR tree under DIR")
    args = parser.parse_args(argv)
    if args.thumbnail:
        scene = args.thumbnail / THUMBNAIL_SCENE
        if not scene.is_file():
            print(f"error: {scene} not found: the thumbnail is made from that real chip", file=sys.stderr)
            return 2
        path = make_thumbnail(scene)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    if args.assemble:
        print(f"wrote {assemble(args.assemble)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
