"""The one private cattrs converter, and the generated hooks it dispatches to.

cattrs' own generated hooks cannot keep unknown keys, nor tell a key left out from a key sent
as ``null``; both are needed so that ``unstructure(structure(d, Run)) == d``. So each model
gets a structure and an unstructure function generated here, once, at import time, from its
attrs fields (straight-line code: one ``dict.get`` per field, nested models and enums only
where the field's type says so), and those are registered on a private
:class:`cattrs.Converter`. The hot path (a page of runs) calls the generated ``Run`` hook
directly, skipping the converter's dispatch.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs

from . import _models as _models_module
from ._models import (
    EMPTY,
    CodeInterpreterTool,
    FileSearchTool,
    FunctionTool,
    NamedToolChoice,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
    Run,
    RunPage,
    UnknownResponseFormat,
    UnknownTool,
)

__all__ = ["converter", "structure", "structure_run", "unstructure"]

T = TypeVar("T")

StructureFn = Callable[[Any], Any]
UnstructureFn = Callable[[Any], Any]

_structure_fns: dict[type, StructureFn] = {}
_unstructure_fns: dict[type, UnstructureFn] = {}


def _expect_object(value: object, what: str) -> typing.NoReturn:
    raise TypeError(f"expected a JSON object for {what}, got {type(value).__name__}: {value!r:.80}")


# --- unions: tools, response_format, tool_choice ----------------------------------------------

_TOOLS: dict[str, type] = {
    "code_interpreter": CodeInterpreterTool,
    "file_search": FileSearchTool,
    "function": FunctionTool,
}
_RESPONSE_FORMATS: dict[str, type] = {
    "text": ResponseFormatText,
    "json_object": ResponseFormatJSONObject,
    "json_schema": ResponseFormatJSONSchema,
}


def _structure_tool(value: Any) -> Any:
    if value.__class__ is not dict:
        _expect_object(value, "a tool")
    kind = value.get("type")
    cls = _TOOLS.get(kind) if kind.__class__ is str else None
    if cls is None:
        return UnknownTool(kind, value)
    return _structure_fns[cls](value)


def _structure_tools(value: Any) -> tuple[Any, ...]:
    if value.__class__ is not list:
        raise TypeError(f"expected a JSON array for tools, got {type(value).__name__}")
    return tuple([_structure_tool(v) for v in value])


def _structure_response_format(value: Any) -> Any:
    if value.__class__ is str:
        return value
    if value.__class__ is not dict:
        _expect_object(value, "response_format")
    kind = value.get("type")
    cls = _RESPONSE_FORMATS.get(kind) if kind.__class__ is str else None
    if cls is None:
        return UnknownResponseFormat(kind, value)
    return _structure_fns[cls](value)


def _structure_tool_choice(value: Any) -> Any:
    if value.__class__ is str:
        return value
    return _structure_fns[NamedToolChoice](value)


def _unstructure_union_member(value: Any) -> Any:
    if value.__class__ is str:
        return value
    if value.__class__ in (UnknownTool, UnknownResponseFormat):
        return dict(value.payload)
    return _unstructure_fns[value.__class__](value)


def _unstructure_tools(value: tuple[Any, ...]) -> list[Any]:
    return [_unstructure_union_member(v) for v in value]


_SPECIAL: dict[tuple[type, str], tuple[StructureFn, UnstructureFn]] = {
    (Run, "tools"): (_structure_tools, _unstructure_tools),
    (Run, "response_format"): (_structure_response_format, _unstructure_union_member),
    (Run, "tool_choice"): (_structure_tool_choice, _unstructure_union_member),
}


# --- code generation ----------------------------------------------------------------------------


def _strip_none(tp: Any) -> Any:
    """``X | None`` -> ``X``; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _generate(cls: type) -> tuple[StructureFn, UnstructureFn]:
    """Generate the structure and unstructure functions of one model class."""
    fields = [f for f in attrs.fields(cls) if f.name not in ("unknown_fields", "_absent")]
    known = frozenset(f.name for f in fields)
    ns: dict[str, Any] = {
        "cls": cls,
        "KNOWN": known,
        "N_KNOWN": len(known),
        "EMPTY": EMPTY,
        "NOTHING_ABSENT": frozenset(),
        "expect_object": _expect_object,
        "fns": _structure_fns,
        "ufns": _unstructure_fns,
    }
    args: list[str] = []
    outs: list[str] = []
    for i, f in enumerate(fields):
        key = repr(f.name)
        get = f"g({key})"
        attr = f"o.{f.name}"
        tp = _strip_none(f.type)
        special = _SPECIAL.get((cls, f.name))
        if special is not None:
            ns[f"s{i}"], ns[f"u{i}"] = special
            args.append(f"None if (v{i} := {get}) is None else s{i}(v{i})")
            outs.append(f"None if (x := {attr}) is None else u{i}(x)")
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            ns[f"m{i}"] = tp._value2member_map_
            ns[f"e{i}"] = tp
            args.append(f"None if (v{i} := {get}) is None else (m{i}.get(v{i}) or e{i}(v{i}))")
            outs.append(f"None if (x := {attr}) is None else x._value_")
        elif isinstance(tp, type) and attrs.has(tp):
            ns[f"c{i}"] = tp
            args.append(f"None if (v{i} := {get}) is None else fns[c{i}](v{i})")
            outs.append(f"None if (x := {attr}) is None else ufns[c{i}](x)")
        elif typing.get_origin(tp) is tuple and attrs.has(typing.get_args(tp)[0]):
            ns[f"c{i}"] = typing.get_args(tp)[0]
            args.append(
                f"None if (v{i} := {get}) is None else "
                f"tuple([fns[c{i}](y) for y in (v{i} if v{i}.__class__ is list "
                f"else expect_object(v{i}, 'a list'))])"
            )
            outs.append(f"None if (x := {attr}) is None else [ufns[c{i}](y) for y in x]")
        else:
            args.append(get)
            outs.append(attr)
    nl = "\n        "
    name = cls.__name__
    structure_src = f"""
def structure_{name}(d):
    if d.__class__ is not dict:
        expect_object(d, {name!r})
    g = d.get
    if KNOWN.issuperset(d):
        u = EMPTY
        a = NOTHING_ABSENT if len(d) == N_KNOWN else KNOWN.difference(d)
    else:
        u = {{k: v for k, v in d.items() if k not in KNOWN}}
        a = KNOWN.difference(d)
    return cls(
        {("," + nl).join(args)},
        unknown_fields=u,
        _absent=a,
    )
"""
    items = [f"{f.name!r}: {out}" for f, out in zip(fields, outs, strict=True)]
    unstructure_src = f"""
def unstructure_{name}(o):
    d = {{
        {("," + nl).join(items)},
    }}
    a = o._absent
    if a:
        for k in a:
            if d[k] is None:
                del d[k]
    if o.unknown_fields:
        d.update(o.unknown_fields)
    return d
"""
    exec(compile(structure_src + unstructure_src, f"<aiorunlist hooks for {name}>", "exec"), ns)  # noqa: S102 - generated from our own attrs fields, no outside input
    return ns[f"structure_{name}"], ns[f"unstructure_{name}"]


def _models() -> list[type]:
    found = []
    for obj in vars(_models_module).values():
        if isinstance(obj, type) and attrs.has(obj) and obj.__module__ == _models_module.__name__:
            names = {f.name for f in attrs.fields(obj)}
            if "_absent" in names:
                found.append(obj)
    return found


for _cls in _models():
    attrs.resolve_types(_cls)
for _cls in _models():
    _structure_fns[_cls], _unstructure_fns[_cls] = _generate(_cls)

#: The generated structure hook of :class:`Run` (the hot path calls it directly).
structure_run: Callable[[Any], Run] = _structure_fns[Run]
_unstructure_run = _unstructure_fns[Run]


def structure_page_body(
    body: Any, *, request_id: str | None = None, run_hook: Callable[[Any], Run] = structure_run
) -> RunPage:
    """Structure a decoded list response (``{"object": "list", "data": [...], ...}``)."""
    if body.__class__ is not dict:
        _expect_object(body, "a list response")
    data = body.get("data")
    if data.__class__ is not list:
        raise TypeError(f"expected 'data' to be a JSON array, got {type(data).__name__}")
    has_more = body.get("has_more", False)
    if has_more.__class__ is not bool:
        raise TypeError(f"expected 'has_more' to be a boolean, got {has_more!r:.40}")
    unknown = {
        k: v
        for k, v in body.items()
        if k not in ("object", "data", "first_id", "last_id", "has_more")
    }
    return RunPage(
        data=tuple([run_hook(r) for r in data]),
        has_more=has_more,
        first_id=body.get("first_id"),
        last_id=body.get("last_id"),
        object=body.get("object"),
        request_id=request_id,
        unknown_fields=unknown or EMPTY,
    )


def _unstructure_page(page: RunPage) -> dict[str, Any]:
    d: dict[str, Any] = {
        "object": page.object,
        "data": [_unstructure_run(r) for r in page.data],
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    }
    d.update(page.unknown_fields)
    return d


converter = cattrs.Converter()


def _as_cattrs_hook(fn: StructureFn) -> Callable[[Any, Any], Any]:
    def hook(data: Any, _type: Any) -> Any:
        return fn(data)

    return hook


for _cls, _fn in _structure_fns.items():
    converter.register_structure_hook(_cls, _as_cattrs_hook(_fn))
for _cls, _ufn in _unstructure_fns.items():
    converter.register_unstructure_hook(_cls, _ufn)
converter.register_structure_hook(RunPage, _as_cattrs_hook(structure_page_body))
converter.register_unstructure_hook(RunPage, _unstructure_page)
converter.register_unstructure_hook(UnknownTool, lambda t: dict(t.payload))
converter.register_unstructure_hook(UnknownResponseFormat, lambda t: dict(t.payload))


def structure(data: Any, cls: type[T]) -> T:
    """Turn decoded JSON (``dict``/``list``) into aiorunlist objects, e.g. ``structure(d, Run)``.

    Raises :class:`TypeError` or :class:`ValueError` if ``data`` does not have the shape of
    ``cls``. Also accepts containers such as ``list[Run]``.
    """
    return converter.structure(data, cls)


def unstructure(obj: Any) -> Any:
    """Turn aiorunlist objects back into plain JSON-ready data; the inverse of :func:`structure`.

    Keys the server left out stay out, unknown keys and values come back as sent.
    """
    if isinstance(obj, Mapping):
        return {k: converter.unstructure(v) for k, v in obj.items()}
    return converter.unstructure(obj)
