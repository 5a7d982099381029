"""Every process graph we ship is checked against the openEO process definitions.

Definitions: the openeo-processes specs that openeo-processes-dask ships as package
data (``openeo_processes_dask/specs/openeo-processes``: the stable processes,
``proposals/`` and ``missing-processes/``, where ``apply_neighborhood`` and
``run_udf`` live), plus ours: ``cloud_mask`` / ``cloud_detection`` from
``backend_plugin/*.json`` and, for calls with a ``namespace``, the UDP itself.

Checked for each node, recursively into child process graphs: the process
exists; every required parameter is given; no unknown parameter; literal values
fit the parameter's schema (type, enum, minimum, items, required properties);
``from_node`` points at a node of the same graph; ``from_parameter`` names a
parameter in scope (the UDP's, or the child callback's); one result node.
"""

import json
from pathlib import Path

import pytest

from openeo_cloudmask import udp
from test_cdse_examples import NAMES, graph_of, offline_document
from udp_builders import build_test_udp
from tiny_model import TINY_MODEL_ID

REPO = Path(__file__).resolve().parent.parent
OURS = {"cloud_mask", "cloud_detection"}


def spec_dir() -> Path:
    """The openEO process specs that openeo-processes-dask (a `test` extra) ships as package data."""
    import openeo_processes_dask

    return Path(openeo_processes_dask.__file__).parent / "specs" / "openeo-processes"


@pytest.fixture(scope="module")
def processes() -> dict:
    root = spec_dir()
    found = {}
    for folder in (root / "missing-processes", root / "proposals", root):  # stable ones win
        for path in sorted(folder.glob("*.json")):
            try:
                spec = json.loads(path.read_text())
            except json.JSONDecodeError:  # the package ships an empty missing-processes/export_collection.json
                continue
            if isinstance(spec, dict) and "id" in spec and "parameters" in spec:
                found[spec["id"]] = spec
    for path in sorted((REPO / "backend_plugin").glob("*.json")):
        spec = json.loads(path.read_text())
        if spec.get("id") in OURS:
            found[spec["id"]] = spec
    for name in ("apply_neighborhood", "run_udf", "load_collection", "mask", "aggregate_temporal_period"):
        assert name in found, f"{name} missing from the offline specs"
    return found


# --------------------------------------------------------------------------- a small JSON-schema subset


def _has_reference(value) -> bool:
    if isinstance(value, dict):
        if {"from_node", "from_parameter"} & set(value):
            return True
        return any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return False


_TYPES = {
    "string": lambda v: isinstance(v, str), "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool), "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None, "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
}


def fits(value, schema) -> bool:
    """Does ``value`` satisfy ``schema`` (a schema or a list of alternatives)? Values holding references pass."""
    if _has_reference(value):
        return True
    if isinstance(schema, list):
        return any(fits(value, s) for s in schema)
    if not isinstance(schema, dict) or not schema:
        return True
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(fits(value, s) for s in schema[key]):
            return False
    if "allOf" in schema and not all(fits(value, s) for s in schema["allOf"]):
        return False
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(_TYPES[t](value) for t in types if t in _TYPES):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
    if isinstance(value, list) and isinstance(schema.get("items"), (dict, list)):
        if not all(fits(v, schema["items"]) for v in value):
            return False
    if isinstance(value, dict) and schema.get("subtype") not in ("process-graph",):
        if any(key not in value for key in schema.get("required", [])):
            return False
        for key, sub in schema.get("properties", {}).items():
            if key in value and not fits(value[key], sub):
                return False
    return True


def _callback_parameters(schema) -> set:
    schemas = schema if isinstance(schema, list) else [schema]
    names = set()
    for s in schemas:
        for alternative in [s, *s.get("anyOf", [])]:
            if isinstance(alternative, dict) and alternative.get("subtype") == "process-graph":
                names |= {p["name"] for p in alternative.get("parameters", [])}
    return names


def validate_graph(graph: dict, processes: dict, scope: set, udps: dict, where: str = "") -> list:
    """Problems found in ``graph`` (empty list: valid)."""
    problems = []
    results = [node_id for node_id, node in graph.items() if node.get("result")]
    if len(results) != 1:
        problems.append(f"{where}: {len(results)} result nodes, need exactly 1")
    for node_id, node in graph.items():
        here = f"{where}/{node_id}"
        pid = node["process_id"]
        spec = udps.get((node.get("namespace"), pid)) if node.get("namespace") else processes.get(pid)
        if spec is None:
            problems.append(f"{here}: unknown process {pid!r} (namespace {node.get('namespace')!r})")
            continue
        params = {p["name"]: p for p in spec["parameters"]}
        args = node.get("arguments", {})
        for name in sorted(set(args) - set(params)):
            problems.append(f"{here}: {pid} has no parameter {name!r} (has {sorted(params)})")
        for name, param in params.items():
            if not param.get("optional") and "default" not in param and name not in args:
                problems.append(f"{here}: {pid} needs parameter {name!r}")
        for name, value in args.items():
            if name not in params:
                continue
            schema = params[name].get("schema", {})

            def walk(v):
                if isinstance(v, dict):
                    if "from_node" in v and v["from_node"] not in graph:
                        problems.append(f"{here}.{name}: from_node {v['from_node']!r} is not in the graph")
                    if "from_parameter" in v and v["from_parameter"] not in scope:
                        problems.append(f"{here}.{name}: from_parameter {v['from_parameter']!r} not in scope {sorted(scope)}")
                    if "process_graph" in v:
                        child_scope = scope | _callback_parameters(schema)
                        problems.extend(validate_graph(v["process_graph"], processes, child_scope, udps, f"{here}.{name}"))
                        return
                    for sub in v.values():
                        walk(sub)
                elif isinstance(v, list):
                    for sub in v:
                        walk(sub)

            walk(value)
            if not (isinstance(value, dict) and "process_graph" in value) and not fits(value, schema):
                problems.append(f"{here}: {pid}.{name} = {json.dumps(value)[:120]} does not fit its schema")
    return problems


def validate_udp(document: dict, processes: dict, udps: dict) -> list:
    problems = []
    for param in document["parameters"]:
        if "default" in param and not fits(param["default"], param["schema"]):
            problems.append(f"parameter {param['name']}: default {param['default']!r} does not fit its schema")
    scope = {p["name"] for p in document["parameters"]}
    return problems + validate_graph(document["process_graph"], processes, scope, udps, document["id"])


# --------------------------------------------------------------------------- the graphs we ship


@pytest.fixture(scope="module")
def tiny_udp(tiny_model_dir):
    from openeo_cloudmask.release.udp_build import load_card

    return build_test_udp(load_card(TINY_MODEL_ID, tiny_model_dir))


@pytest.fixture(scope="module")
def udps(tiny_udp):
    """UDPs reachable by namespace: the committed one if generated, else the one built from the tiny card."""
    from openeo_cloudmask.release import settings

    document = json.loads(settings.UDP_PATH.read_text()) if settings.UDP_PATH.is_file() else tiny_udp
    return {(settings.udp_namespace_url(), "cloud_mask"): document, ("user", "cloud_mask"): document}


def test_generated_udp_is_valid(tiny_udp, processes, udps):
    assert validate_udp(tiny_udp, processes, udps) == []


def test_every_json_in_process_graphs_is_valid(processes, udps):
    folder = REPO / "process_graphs"
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text())
        if path.name.endswith(".memory.json"):
            assert {"model", "onnx_sha256", "chunk_px", "runs"} <= set(document), path
            continue
        assert "process_graph" in document, f"{path} is neither a process graph nor a memory record"
        assert validate_udp(document, processes, udps) == [], path


@pytest.mark.parametrize("name", NAMES)
def test_example_graph_is_valid(name, processes, udps):
    assert validate_graph(graph_of(offline_document(name)), processes, set(), udps, name) == []


def test_the_validator_catches_mistakes(tiny_udp, processes, udps):
    bad = json.loads(json.dumps(tiny_udp))
    node = bad["process_graph"]["cloudmask1"]
    node["arguments"]["sizes"] = node["arguments"].pop("size")  # unknown + missing required
    node["arguments"]["process"]["process_graph"]["runudf1"]["arguments"]["runtime"] = 3  # wrong type
    node["arguments"]["context"]["model"] = {"from_parameter": "modle"}  # out of scope
    bad["process_graph"]["x"] = {"process_id": "no_such_process", "arguments": {}}
    problems = "\n".join(validate_udp(bad, processes, udps))
    for expected in ("no parameter 'sizes'", "needs parameter 'size'", "run_udf.runtime", "'modle' not in scope",
                     "unknown process 'no_such_process'"):
        assert expected in problems, problems
