"""A Hypothesis strategy for the JSON Schema subset the contract uses.

hypothesis-jsonschema no longer runs against current Hypothesis releases, so the tests use
this equivalent: it understands ``$ref`` into ``$defs``, ``type`` (one or several),
``enum``, ``properties``/``required``/``additionalProperties``, ``items``/``maxItems``,
``minimum``/``maximum``, ``anyOf``/``oneOf`` (as a choice) and ``allOf`` (merged). Optional
properties are sometimes left out and, where ``additionalProperties`` is not ``false``,
unknown keys with arbitrary JSON values are sometimes added, so generated objects exercise
what a server may send beyond the schema.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["from_schema", "json_values"]

_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (nested lists and objects), kept small."""
    return st.recursive(
        _SCALARS | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy of JSON values valid against ``schema`` (a standalone schema with ``$defs``)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    return _strategy(schema, defs, depth=0)


def _merge(parts: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for raw in parts:
        for key, value in _deref(raw, defs).items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = sorted({*merged.get("required", []), *value})
            else:
                merged[key] = value
    return merged


def _deref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**defs[ref.rsplit("/", 1)[-1]], **rest}
    return schema


def _strategy(schema: Any, defs: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if schema is True or schema == {}:
        return json_values()
    schema = _deref(schema, defs)
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return _strategy(_merge([*schema["allOf"], rest], defs), defs, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k not in (key, "description", "title")}
            options = [_merge([option, rest], defs) if rest else option for option in schema[key]]
            return st.one_of([_strategy(o, defs, depth + 1) for o in options])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_strategy({**schema, "type": k}, defs, depth) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e9), schema.get("maximum", 1e9), allow_nan=False)
    if kind == "string":
        return st.text(max_size=12)
    if kind == "array":
        return st.lists(
            _strategy(schema.get("items", True), defs, depth + 1),
            max_size=min(schema.get("maxItems", 3), 3),
        )
    if kind == "object" or "properties" in schema:
        return _object(schema, defs, depth)
    return json_values()


def _object(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    extra = schema.get("additionalProperties", True)
    fields = {k: _strategy(v, defs, depth + 1) for k, v in props.items() if k in required}
    optional = {k: _strategy(v, defs, depth + 1) for k, v in props.items() if k not in required}
    base = st.fixed_dictionaries(fields, optional=optional)
    if extra is False or depth > 4:
        return base
    extra_values = json_values() if extra is True else _strategy(extra, defs, depth + 1)
    unknown = st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in props), extra_values, max_size=2
    )
    return st.builds(lambda known, more: {**more, **known}, base, unknown)
