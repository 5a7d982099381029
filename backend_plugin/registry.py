"""Register this package's openEO processes into openeo-pg-parser-networkx registries, and run graphs.

Nothing happens at import time. Call one of:

- :func:`register` to add ``cloud_mask``, ``cloud_detection``, ``apply_neighborhood``,
  ``run_udf`` and a lazy ``mask`` to a ``ProcessRegistry`` you own (one module and one
  spec per process id: ``cloud_mask.py`` + ``cloud_mask.json``, ...);
- :func:`build_registry` for a complete registry: every openeo-processes-dask
  process that has a spec, plus ours;
- :func:`install_into_local_connection` to add ours to the registry that
  ``openeo.LocalConnection`` executes with (``openeo.local.processing.PROCESS_REGISTRY``),
  replacing its eager ``mask``, so that a graph stays lazy until it is computed.

:func:`run_process_graph` validates a graph against the registry's specs
(unknown processes, unknown or missing arguments, literal values that break a
parameter's JSON schema, references to undefined parameters) and raises an
openEO-style error *before* building or computing anything; then it executes
the graph with the parser. Our implementations validate their arguments
against their spec again when they run (graphs built by other tools too).
"""

import functools
import logging

from .errors import (
    ProcessGraphParameterMissing,
    ProcessParameterInvalid,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)

_log = logging.getLogger(__name__)

OUR_PROCESSES = ("cloud_mask", "cloud_detection", "apply_neighborhood", "run_udf", "mask")
_CUBE_SUBTYPES = {"datacube", "raster-cube", "process-graph", "vector-cube"}


# --------------------------------------------------------------------------- schema checks


def _schema_alternatives(schema):
    return schema if isinstance(schema, list) else [schema]


def check_argument(process_id: str, parameter: dict, value) -> None:
    """Validate one literal argument against a parameter's JSON schema; raise ProcessParameterInvalid."""
    import jsonschema

    if callable(value) or hasattr(value, "dims") or hasattr(value, "chunks"):
        return  # cubes, arrays and child processes are checked by the implementation
    alternatives = _schema_alternatives(parameter.get("schema", {}))
    if any(isinstance(s, dict) and s.get("subtype") in _CUBE_SUBTYPES for s in alternatives) and not any(
        isinstance(s, dict) and s.get("subtype") not in _CUBE_SUBTYPES for s in alternatives
    ):
        return
    schema = {"anyOf": alternatives} if len(alternatives) > 1 else alternatives[0]
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ProcessParameterInvalid(process_id, parameter["name"], f"{error.message}{f' (at {where})' if where else ''}")


def _validating(spec: dict, func):
    """Wrap an implementation so that its arguments are checked against ``spec`` before it runs."""
    parameters = {p["name"]: p for p in spec["parameters"]}
    required = [name for name, p in parameters.items() if not p.get("optional")]
    process_id = spec["id"]

    @functools.wraps(func)
    def implementation(*args, **kwargs):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise ProcessParameterUnsupported(process_id, unknown[0], parameters)
        given = set(kwargs) | set(list(parameters)[: len(args)])
        for name in required:
            if name not in given:
                raise ProcessParameterRequired(process_id, name)
        for name, value in kwargs.items():
            check_argument(process_id, parameters[name], value)
        return func(*args, **kwargs)

    implementation.__name__ = process_id
    return implementation


# --------------------------------------------------------------------------- registration


def our_processes(model_dir=None, chunk_px=None) -> dict:
    """``{process_id: (spec, implementation)}`` for this package; ``model_dir`` overrides the model search path."""
    from . import apply_neighborhood, cloud_detection, cloud_mask, mask, run_udf

    return {
        "cloud_mask": (
            cloud_mask.load_spec(),
            functools.partial(cloud_mask.cloud_mask, model_dir=model_dir, chunk_px=chunk_px),
        ),
        "cloud_detection": (
            cloud_detection.load_spec(),
            functools.partial(cloud_detection.cloud_detection, model_dir=model_dir, chunk_px=chunk_px),
        ),
        "apply_neighborhood": (apply_neighborhood.load_spec(), apply_neighborhood.apply_neighborhood),
        "run_udf": (run_udf.load_spec(), run_udf.run_udf),
        "mask": (mask.load_spec(), mask.mask),
    }


def _resolve(value, named: dict):
    """Replace parameter references anywhere inside lists and dicts (the parser leaves nested ones unresolved)."""
    from openeo_pg_parser_networkx.pg_schema import ParameterReference

    if isinstance(value, ParameterReference):
        if value.from_parameter not in named:
            raise ProcessGraphParameterMissing(
                f"Parameter '{value.from_parameter}' is referenced but not defined; defined: {sorted(named)}"
            )
        return named[value.from_parameter]
    if isinstance(value, dict):
        return {key: _resolve(item, named) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, named) for item in value]
    return value


def _resolving(func):
    """What openeo-processes-dask's ``process`` decorator does, but also for references nested in
    dicts and lists, e.g. ``apply_neighborhood(context={"output": {"from_parameter": "output"}})`` in a UDP."""
    import inspect

    accepted = set(inspect.signature(func).parameters)

    @functools.wraps(func)
    def implementation(*args, positional_parameters=None, named_parameters=None, **kwargs):
        named = dict(named_parameters or {})
        for name, index in (positional_parameters or {}).items():
            named[name] = args[index]
        for special in ("axis", "keepdims", "source_transposed_axis", "dim_labels"):
            if special not in accepted:
                kwargs.pop(special, None)
        return func(*[_resolve(a, named) for a in args], **{k: _resolve(v, named) for k, v in kwargs.items()})

    return implementation


def register(registry, model_dir=None, chunk_px=None, namespace: str = "predefined"):
    """Add our processes to an openeo-pg-parser-networkx ``ProcessRegistry``; return the registry.

    Each implementation is wrapped like openeo-processes-dask's ``process``
    decorator does (resolve parameter references, here also nested ones) and
    then validates its arguments against its spec. A registry's own
    ``wrap_funcs`` are bypassed for our processes, so ``process`` is not applied
    twice (it would drop ``named_parameters`` before nested references are resolved).
    """
    from openeo_pg_parser_networkx.process_registry import Process

    for process_id, (spec, func) in our_processes(model_dir, chunk_px).items():
        implementation = _resolving(_validating(spec, func))
        registry[(namespace, process_id)] = Process(spec=spec, implementation=None, namespace=namespace)
        registry[(namespace, process_id)].implementation = implementation  # set after: no wrap_funcs
    return registry


def build_registry(model_dir=None, chunk_px=None):
    """A new ``ProcessRegistry`` with every openeo-processes-dask process that has a spec, plus ours."""
    from openeo_pg_parser_networkx import ProcessRegistry
    from openeo_pg_parser_networkx.process_registry import Process
    from openeo_processes_dask import specs
    from openeo_processes_dask.process_implementations.core import process, standard_processes

    registry = ProcessRegistry(wrap_funcs=[process])
    for func in standard_processes:
        spec = getattr(specs, func.__name__, None)
        if spec is not None:  # helpers exported by the package have no spec: they are not processes
            registry[func.__name__] = Process(spec=spec, implementation=func)
    return register(registry, model_dir=model_dir, chunk_px=chunk_px)


def install_into_local_connection(model_dir=None, chunk_px=None):
    """Add our processes, the lazy ``mask`` included, to ``openeo.LocalConnection``'s registry (importing openeo's
    local-processing module, which builds that registry on import)."""
    from openeo.local import processing

    return register(processing.PROCESS_REGISTRY, model_dir=model_dir, chunk_px=chunk_px)


# --------------------------------------------------------------------------- graphs


def _references(value):
    """``from_parameter`` names used in an argument, not descending into child process graphs."""
    if isinstance(value, dict):
        if "from_parameter" in value and len(value) == 1:
            yield value["from_parameter"]
        elif "process_graph" not in value:
            for item in value.values():
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _has_node_reference(value) -> bool:
    if isinstance(value, dict):
        return "from_node" in value or any(_has_node_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_node_reference(v) for v in value)
    return False


def _lookup_spec(registry, process_id: str) -> dict:
    try:
        return registry[process_id].spec
    except KeyError:
        raise ProcessUnsupported(f"Process with identifier '{process_id}' is not available in namespace 'predefined'.") from None


def _validate_nodes(flat: dict, registry, scope: set) -> None:
    for node_id, node in flat.items():
        process_id = node.get("process_id")
        spec = _lookup_spec(registry, process_id)
        parameters = {p["name"]: p for p in spec.get("parameters", [])}
        arguments = node.get("arguments", {})
        unknown = sorted(set(arguments) - set(parameters))
        if unknown:
            raise ProcessParameterUnsupported(process_id, unknown[0], parameters)
        for name, parameter in parameters.items():
            if not parameter.get("optional") and name not in arguments:
                raise ProcessParameterRequired(process_id, name)
        for name, value in arguments.items():
            if isinstance(value, dict) and "process_graph" in value:
                child = set(scope)
                for alternative in _schema_alternatives(parameters[name].get("schema", {})):
                    if isinstance(alternative, dict):
                        child |= {p["name"] for p in alternative.get("parameters", [])}
                _validate_nodes(value["process_graph"], registry, child)
                continue
            for reference in _references(value):
                if reference not in scope:
                    raise ProcessGraphParameterMissing(
                        f"Process '{process_id}' (node '{node_id}') refers to parameter '{reference}', "
                        f"which is not defined; defined parameters: {sorted(scope)}"
                    )
            if not list(_references(value)) and not _has_node_reference(value):
                check_argument(process_id, parameter=parameters[name], value=value)


def validate_process_graph(graph: dict, registry, parameters: dict = None) -> dict:
    """Check a process graph (flat, ``{"process_graph": ...}`` or a UDP document) before running it.

    Returns the effective parameter values (given ones plus the UDP's
    declared defaults). Raises an openEO-style error for an unknown process,
    argument or graph parameter, a missing required one, or a literal value
    that breaks its schema.
    """
    parameters = dict(parameters or {})
    flat = graph["process_graph"] if "process_graph" in graph else graph
    declared = {p["name"]: p for p in graph.get("parameters", [])} if "process_graph" in graph else {}
    if declared:
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise ProcessParameterUnsupported(graph.get("id", "process graph"), unknown[0], declared)
        for name, parameter in declared.items():
            if name in parameters:
                check_argument(graph.get("id", "process graph"), parameter, parameters[name])
            elif "default" in parameter:
                parameters[name] = parameter["default"]
            elif not parameter.get("optional"):
                raise ProcessGraphParameterMissing(
                    f"The process graph '{graph.get('id', '')}' needs parameter '{name}', which was not given."
                )
    _validate_nodes(flat, registry, set(parameters))
    return parameters


def run_process_graph(graph: dict, registry, parameters: dict = None):
    """Validate, then execute a process graph with the parser and ``registry``; return its (lazy) result.

    Cube parameters that are not Dask-backed become Dask-backed first (one chunk per date), so that nothing
    is computed until the caller computes the result; ``cloud_mask`` cuts them spatially by its own rule.
    """
    from openeo_pg_parser_networkx import OpenEOProcessGraph

    values = validate_process_graph(graph, registry, parameters)
    for name, value in values.items():  # keep everything lazy: a numpy-backed cube would be computed node by node
        if hasattr(value, "dims") and hasattr(value, "chunk") and getattr(value, "chunks", None) is None:
            values[name] = value.chunk({"t": 1} if "t" in value.dims else {})
    parsed = OpenEOProcessGraph({"process_graph": graph["process_graph"] if "process_graph" in graph else graph})
    return parsed.to_callable(registry, parameters=values)(named_parameters=values)
