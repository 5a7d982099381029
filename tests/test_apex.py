"""The APEx catalogue entry (process_graphs/apex/): schemas, the catalogue's own lint rules, and its sources.

The schemas come from ``../shared/apex/schemas`` (ESA-APEx/apex_algorithms, Apache-2.0), read at test time and
never copied here; those tests skip cleanly without ``../shared``. The lint rules of the catalogue's
``qa/test_*.py`` that apply to this entry are re-implemented below (layout, id = file name, link rules, UDP
parameters); their network checks (HEAD on every link) are not, because no test touches the network.
"""

import json
import os
import re
import struct
from pathlib import Path

import pytest

from openeo_cloudmask.release import apex, settings, udp_build

SHARED_APEX = Path(os.environ.get("OPENEO_CLOUDMASK_SHARED_APEX", settings.REPO.parent / "shared" / "apex"))
RECORD_PATH = apex.ALGORITHM_DIR / "records" / f"{settings.UDP_ID}.json"
PROVIDER_PATH = apex.PROVIDER_DIR / "record.json"
SCENARIO_PATH = apex.ALGORITHM_DIR / "benchmark_scenarios" / f"{settings.UDP_ID}.json"


def schema(name: str) -> dict:
    path = SHARED_APEX / "schemas" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"APEx schemas not found at {path.parent} (../shared/apex)")
    return json.loads(path.read_text())


def validate(document, name: str) -> None:
    import jsonschema

    jsonschema.Draft202012Validator(schema(name)).validate(document)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The complete pull-request tree, the UDP included."""
    return apex.assemble(tmp_path_factory.mktemp("pr"))


def github_feature_branch_refs(href: str) -> list:
    """The catalogue's ``assert_no_github_feature_branch_refs``: GitHub links must point at main (or master)."""
    refs = re.findall(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/([^/]+)/", href or "")
    refs += re.findall(r"https://github\.com/[^/]+/[^/]+/(?:blob|tree|raw)/([^/]+)/", href or "")
    return [ref for ref in refs if ref not in ("main", "master") and not ref.startswith("refs")]


def all_links(document) -> list:
    if isinstance(document, dict):
        found = [document["href"]] if isinstance(document.get("href"), str) else []
        found += [document["namespace"]] if isinstance(document.get("namespace"), str) else []
        return found + [href for value in document.values() for href in all_links(value)]
    if isinstance(document, list):
        return [href for value in document for href in all_links(value)]
    return []


# --------------------------------------------------------------------------- schemas


def test_algorithm_record_validates():
    validate(json.loads(RECORD_PATH.read_text()), "record")


def test_provider_record_validates():
    validate(json.loads(PROVIDER_PATH.read_text()), "provider")


def test_benchmark_scenarios_validate():
    scenarios = json.loads(SCENARIO_PATH.read_text())
    assert isinstance(scenarios, list) and scenarios
    for scenario in scenarios:
        validate(scenario, "benchmark_scenario")


def test_the_example_entry_validates_with_the_same_code():
    """The check itself is right: the catalogue's own complete example passes it."""
    example = SHARED_APEX / "example"
    if not example.is_dir():
        pytest.skip("../shared/apex/example not found")
    validate(json.loads((example / "records" / "solar_pv_detection.json").read_text()), "record")
    validate(json.loads((example / "provider_record.json").read_text()), "provider")
    for scenario in json.loads((example / "benchmark_scenarios" / "solar_pv_detection.json").read_text()):
        validate(scenario, "benchmark_scenario")


def test_a_broken_record_fails_validation():
    import jsonschema

    record = json.loads(RECORD_PATH.read_text())
    record["properties"]["keywords"] = ["not a GCMD keyword"]
    with pytest.raises(jsonschema.ValidationError):
        validate(record, "record")


# --------------------------------------------------------------------------- the catalogue's lint rules


def test_layout_and_ids_equal_file_names(tree):
    provider = tree / settings.APEX_PROVIDER
    assert (provider / "record.json").is_file(), "each provider folder holds record.json"
    record_path = provider / settings.UDP_ID / "records" / f"{settings.UDP_ID}.json"
    record = json.loads(record_path.read_text())
    assert str(record_path).endswith(f"{record['id']}/records/{record['id']}.json")
    for path in (provider / settings.UDP_ID / "benchmark_scenarios").glob("*.json"):
        assert [s["id"] for s in json.loads(path.read_text())] == [path.stem]
    for path in (provider / settings.UDP_ID / "openeo_udp").glob("*.json"):
        assert json.loads(path.read_text())["id"] == path.stem


def test_udp_lint(tree):
    """``test_lint_openeo_udp_json_file`` and ``check_udp_parameters`` on the UDP as the PR carries it."""
    (path,) = (tree / settings.APEX_PROVIDER / settings.UDP_ID / "openeo_udp").glob("*.json")
    udp = json.loads(path.read_text())
    assert udp["id"] == path.stem and "description" in udp and "process_graph" in udp and "parameters" in udp
    for parameter in udp["parameters"]:
        assert "name" in parameter and "description" in parameter, parameter
        schemas = parameter["schema"] if isinstance(parameter["schema"], list) else [parameter["schema"]]
        assert all("type" in item for item in schemas), parameter["name"]
    assert len(path.read_bytes()) < udp_build.MAX_UDP_BYTES


def test_record_links(tree):
    """The record's links: a UDP link, a service, the provider and platform by relative path, main-branch URLs."""
    record = json.loads(RECORD_PATH.read_text())
    rels = {link["rel"]: link for link in record["links"]}
    assert rels["application"]["href"] == settings.APEX_UDP_URL
    assert rels["application"]["type"] == "application/vnd.openeo+json;type=process"
    assert rels["service"]["href"].startswith("https://")
    assert (RECORD_PATH.parent / rels["provider"]["href"]).resolve() == PROVIDER_PATH.resolve()
    assert rels["platform"]["href"] == "../../../../platform_catalog/cdse_openeo_federation.json"
    assert any(contact.get("organization") for contact in record["properties"]["contacts"])
    # the URLs into the catalogue name files the pull request adds
    for href in (settings.APEX_UDP_URL, apex.THUMBNAIL_URL):
        relative = href.removeprefix(settings.APEX_RAW_URL + "/")
        assert (tree / relative).is_file(), href


def test_no_github_feature_branch_refs():
    for path in (RECORD_PATH, PROVIDER_PATH, SCENARIO_PATH):
        for href in all_links(json.loads(path.read_text())):
            assert github_feature_branch_refs(href) == [], (path.name, href)
    assert github_feature_branch_refs("https://raw.githubusercontent.com/o/r/my-branch/x.json") == ["my-branch"]


# --------------------------------------------------------------------------- sources


def test_entry_is_generated_from_the_committed_udp():
    """`make udp` writes the records; they must match what the current UDP and card give."""
    udp = json.loads(settings.UDP_PATH.read_text())
    for relative, content in apex.entry_files(udp, udp_build.load_card()).items():
        assert (apex.CATALOG / relative).read_text() == content, f"{relative} is stale: run `make udp`"


def test_benchmark_runs_the_graph_a_user_runs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cdse_cloud_mask", settings.REPO / "examples" / "cdse_cloud_mask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (scenario,) = json.loads(SCENARIO_PATH.read_text())
    assert scenario["process_graph"] == module.build(namespace=settings.APEX_UDP_URL).flat_graph()


def test_thumbnail_is_a_small_png_of_image_and_mask():
    data = apex.THUMBNAIL.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 2 * height and 96 <= height <= 256
    assert len(data) < 100 * 1024
