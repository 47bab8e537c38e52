"""Standalone JSON Schemas (draft 2020-12) built from the OpenAPI contract.

The contract is ``shared/spec/list-runs.openapi.json`` next to the repository (override the location
with the ``AIORUNLIST_SPEC`` environment variable). OpenAPI schemas are almost JSON Schema; this
module rewrites the rest:

* ``#/components/schemas/X`` references become ``#/$defs/X`` and every component schema is included
  under ``$defs``, so a schema for one component is self-contained;
* OpenAPI's ``nullable: true`` becomes ``anyOf: [<schema>, {"type": "null"}]``, including the
  ``allOf: [{"$ref": ...}, {"nullable": true}]`` idiom (read literally, it would reject null);
* OpenAPI-only annotations (``example``, ``x-*`` extensions) are dropped.

The result works with ``jsonschema.Draft202012Validator`` and with
``hypothesis_jsonschema.from_schema``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["DRAFT_2020_12", "load_spec", "spec_examples", "spec_path", "spec_schema"]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

_COMPONENT_PREFIX = "#/components/schemas/"
# Keywords whose value maps names to subschemas.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
# Keywords whose value is one subschema.
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
# Keywords whose value is a list of subschemas.
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
# OpenAPI-only keywords that JSON Schema does not know.
_OPENAPI_ONLY = frozenset({"nullable", "example", "discriminator", "xml", "externalDocs"})
# Keywords that only annotate; a subschema made of nothing else constrains nothing.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated"})


def spec_path() -> Path:
    """Return the location of the OpenAPI contract (``AIORUNLIST_SPEC`` overrides the default)."""
    override = os.environ.get("AIORUNLIST_SPEC")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data" / "list-runs.openapi.json"


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        spec: dict[str, Any] = json.load(f)
    return spec


def load_spec() -> dict[str, Any]:
    """Return the parsed OpenAPI document (a fresh copy)."""
    return copy.deepcopy(_load(spec_path()))


def _is_nullable_marker(node: Any) -> bool:
    """Whether ``node`` is an ``allOf`` member that only says ``nullable: true``."""
    if not isinstance(node, dict) or node.get("nullable") is not True:
        return False
    return all(key == "nullable" or key in _ANNOTATIONS for key in node)


def _convert(node: Any) -> Any:
    """Convert one OpenAPI schema object into a JSON Schema (draft 2020-12) object."""
    if not isinstance(node, dict):
        return node  # boolean schemas
    out: dict[str, Any] = {}
    nullable = node.get("nullable") is True
    for key, value in node.items():
        if key in _OPENAPI_ONLY or key.startswith("x-"):
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith(_COMPONENT_PREFIX):
            out[key] = "#/$defs/" + value[len(_COMPONENT_PREFIX) :]
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = _convert(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            members = value
            if key == "allOf" and any(_is_nullable_marker(m) for m in members):
                nullable = True
                members = [m for m in members if not _is_nullable_marker(m)]
            out[key] = [_convert(m) for m in members]
        else:
            out[key] = copy.deepcopy(value)
    if out.get("allOf") == []:
        del out["allOf"]
    if not nullable:
        return out
    annotations = {key: out.pop(key) for key in list(out) if key in _ANNOTATIONS}
    if list(out) == ["allOf"] and len(out["allOf"]) == 1:
        out = out["allOf"][0]
    return {**annotations, "anyOf": [out, {"type": "null"}]}


def spec_schema(name: str) -> dict[str, Any]:
    """Return a standalone draft 2020-12 JSON Schema for the component schema ``name``.

    Every component schema is included under ``$defs`` (references point there), and OpenAPI
    ``nullable`` is expressed in JSON Schema terms. Raises ``KeyError`` for an unknown ``name``.
    """
    schemas: dict[str, Any] = _load(spec_path())["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"no component schema named {name!r}; known: {sorted(schemas)}")
    root = _convert(schemas[name])
    defs = {key: _convert(value) for key, value in schemas.items()}
    return {"$schema": DRAFT_2020_12, **root, "$defs": defs}


def spec_examples() -> list[dict[str, Any]]:
    """Return the parsed example response bodies (``x-oaiMeta.examples.response``) of listRuns."""
    spec = _load(spec_path())
    bodies: list[dict[str, Any]] = []
    for item in spec["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or operation.get("operationId") != "listRuns":
                continue
            examples = operation.get("x-oaiMeta", {}).get("examples", [])
            for example in examples if isinstance(examples, list) else [examples]:
                response = example.get("response")
                if isinstance(response, str):
                    bodies.append(json.loads(response))
    return bodies
