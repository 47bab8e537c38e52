"""The one private cattrs converter, and the generated hooks it dispatches to.

cattrs' own generated hooks cannot keep unknown keys, nor tell a key left out from a key sent
as ``null``; both are needed so that ``unstructure(structure(d, Run)) == d``. So each model
gets a structure and an unstructure function generated here, once, at import time, from its
attrs fields (straight-line code: one ``dict.get`` per field, nested models and enums only
where the field's type says so), and those are registered on a private
:class:`cattrs.Converter`. The hot path (a page of runs) calls the generated ``Run`` hook
directly, skipping the converter's dispatch.

Building a typed ``Run`` is most of what the client spends per run beyond decoding JSON, so
the structure hooks avoid the costs that do not change the result (docs/performance.md has
the measurements): fields are written with plain slot stores on a builder subclass instead of
a frozen ``__init__``'s ``object.__setattr__`` per field (:func:`_builder`); a dict whose key
set was seen before costs one comparison to find its absent keys, shared as one frozenset;
and small value objects that repeat (``{"type": "auto", "last_messages": null}``) are shared,
frozen instances (``_INTERNABLE``).
"""

from __future__ import annotations

import enum
import linecache
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
    FrozenDict,
    FunctionTool,
    IncompleteDetails,
    NamedToolChoice,
    NamedToolChoiceFunction,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
    Run,
    RunPage,
    TruncationStrategy,
    UnknownResponseFormat,
    UnknownTool,
)

__all__ = ["converter", "structure", "structure_run", "unstructure"]

T = TypeVar("T")

StructureFn = Callable[[Any], Any]
UnstructureFn = Callable[..., Any]

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


#: ``type`` -> the generated structure hook of that tool / response format (filled below,
#: once the hooks exist).
_TOOL_HOOKS: dict[str, StructureFn] = {}
_RESPONSE_FORMAT_HOOKS: dict[str, StructureFn] = {}


def _structure_tools(value: Any) -> tuple[Any, ...]:
    if value.__class__ is not list:
        raise TypeError(f"expected a JSON array for tools, got {type(value).__name__}")
    hooks = _TOOL_HOOKS
    tools = []
    for tool in value:  # one loop, no call per tool but its own hook's
        if tool.__class__ is not dict:
            _expect_object(tool, "a tool")
        kind = tool.get("type")
        hook = hooks.get(kind) if kind.__class__ is str else None
        tools.append(UnknownTool(kind, tool) if hook is None else hook(tool))
    return tuple(tools)


def _structure_response_format(value: Any) -> Any:
    if value.__class__ is str:
        return value
    if value.__class__ is not dict:
        _expect_object(value, "response_format")
    kind = value.get("type")
    hook = _RESPONSE_FORMAT_HOOKS.get(kind) if kind.__class__ is str else None
    if hook is None:
        return UnknownResponseFormat(kind, value)
    return hook(value)


def _structure_tool_choice(value: Any) -> Any:
    if value.__class__ is str:
        return value
    return _structure_fns[NamedToolChoice](value)


#: The containers a JSON value may be made of: what :func:`thaw` copies.
_CONTAINERS: frozenset[type] = frozenset({dict, list, tuple, FrozenDict})


def thaw(value: Any) -> Any:
    """A deep copy of a JSON value, as plain ``dict`` and ``list`` containers.

    What :func:`unstructure` hands out and :func:`structure` keeps, so that a run shares no
    container with its caller: editing one result changes neither the run nor the next result.
    Scalars (strings, numbers, ``None``) are immutable and shared.
    """
    c = value.__class__
    if c is dict or c is FrozenDict:
        return {k: thaw(v) if v.__class__ in _CONTAINERS else v for k, v in value.items()}
    if c is list or c is tuple:
        return [thaw(v) if v.__class__ in _CONTAINERS else v for v in value]
    if isinstance(value, Mapping):  # another mapping a caller built a model with
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _unstructure_union_member(value: Any, copy: bool = True) -> Any:
    if value.__class__ is str:
        return value
    if value.__class__ is dict:
        return thaw(value) if copy else value  # JSON a caller put in a model they built
    if value.__class__ in (UnknownTool, UnknownResponseFormat):
        return thaw(value.payload) if copy else value.payload
    return _unstructure_fns[value.__class__](value, copy)


def _unstructure_tools(value: tuple[Any, ...], copy: bool = True) -> list[Any]:
    return [_unstructure_union_member(v, copy) for v in value]


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


#: At most this many key sets are remembered per class (runs from one server share a
#: handful; the cap only guards against a server that varies its keys endlessly).
_MAX_SHAPES = 64
#: At most this many shared instances are kept per internable class (see _generate).
_MAX_INTERNED = 256


def _builder(cls: type) -> type:
    """A subclass of ``cls`` that may be written to, used only while building an instance.

    A frozen attrs class sets each field with ``object.__setattr__`` (a call per field). The
    builder has the same slots, a no-op ``__init__`` and the plain ``object.__setattr__`` /
    ``__delattr__``, so the generated hook writes fields with ordinary attribute stores (the
    interpreter's fast slot store), then turns the finished object into a ``cls`` by assigning
    ``__class__`` (same layout, so CPython allows it). No one ever sees a builder instance.
    """
    return type(
        f"_{cls.__name__}Builder",
        (cls,),
        {
            "__slots__": (),
            "__init__": object.__init__,
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__module__": __name__,
        },
    )


class _Shapes:
    """The key sets of one class seen so far, to tell ``_absent`` with one comparison.

    ``by_count[n]`` is ``(present, absent)`` for the last dict of ``n`` keys that had no
    unknown key: a dict ``d`` of ``n`` keys with ``present.issuperset(d)`` has exactly those
    keys, so its ``_absent`` is ``absent``, shared (not a new frozenset per object).
    """

    __slots__ = ("by_count", "interned", "known")

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        empty: frozenset[str] = frozenset()
        self.by_count: dict[int, tuple[frozenset[str], frozenset[str]]] = {
            len(known): (known, empty)
        }
        self.interned: dict[frozenset[str], frozenset[str]] = {empty: empty}

    def absent(self, d: dict[str, Any], *, exact: bool) -> frozenset[str]:
        """The known keys missing from ``d`` (``exact``: ``d`` has no unknown key)."""
        absent = self.known.difference(d)
        shared = self.interned.get(absent)
        if shared is None:
            if len(self.interned) >= _MAX_SHAPES:
                return absent
            self.interned[absent] = shared = absent
        if exact:
            self.by_count[len(d)] = (self.known - shared, shared)
        return shared


#: Small value objects whose values repeat from run to run: an instance whose values are all
#: strings or ``None`` is shared (see _generate), e.g. ``{"type": "file_search"}``; one with
#: a nested object or a number is built as usual. Not ``Usage`` (its counts rarely repeat)
#: nor ``FunctionCall`` (its arguments never do).
_INTERNABLE: frozenset[type] = frozenset(
    {
        CodeInterpreterTool,
        FileSearchTool,
        IncompleteDetails,
        NamedToolChoice,
        NamedToolChoiceFunction,
        ResponseFormatJSONObject,
        ResponseFormatText,
        TruncationStrategy,
    }
)


def _generate(cls: type) -> tuple[StructureFn, UnstructureFn]:
    """Generate the structure and unstructure functions of one model class.

    The structure function is straight-line code: one ``dict.get`` and one slot store per
    field, on a builder (see :func:`_builder`) that its last line makes a ``cls``. A dict whose
    key set was seen before (the common case: a server sends the same keys every time) costs
    one comparison of its keys; only other dicts pay for working out unknown fields and absent
    keys. Small value objects (``_INTERNABLE``) whose values are all strings or
    ``None`` are shared: the same ``{"type": "auto", "last_messages": null}`` gives the same
    frozen ``TruncationStrategy``, which saves building it and keeps it out of the garbage
    collector's way.
    """
    fields = [f for f in attrs.fields(cls) if f.name not in ("unknown_fields", "_absent")]
    # The hooks write fields directly (see _builder), so nothing attrs' __init__ would run
    # may exist: fail at import rather than skip it silently.
    for f in attrs.fields(cls):
        if f.validator is not None or f.converter is not None:
            raise TypeError(f"{cls.__name__}.{f.name}: the hooks skip validators and converters")
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        raise TypeError(f"{cls.__name__}: the generated hooks skip __attrs_post_init__")
    known = frozenset(f.name for f in fields)
    shapes = _Shapes(known)
    internable = cls in _INTERNABLE
    ns: dict[str, Any] = {
        "cls": cls,
        "Builder": _builder(cls),
        "KNOWN": known,
        "SHAPES": shapes.by_count,
        "absent_of": shapes.absent,
        "EMPTY": EMPTY,
        "FrozenDict": FrozenDict,
        "expect_object": _expect_object,
        "ufns": _unstructure_fns,
        "thaw": thaw,
        "CONTAINERS": _CONTAINERS,
        "INTERNED": {},
        "MAX_INTERNED": _MAX_INTERNED,
    }
    sets: list[str] = []
    outs: list[str] = []
    for i, f in enumerate(fields):
        key = repr(f.name)
        get = f"g({key})"
        attr = f"o.{f.name}"
        tp = _strip_none(f.type)
        special = _SPECIAL.get((cls, f.name))
        if internable:
            get = f"v{i}"  # read once, before the shared-instance look-up
        if special is not None:
            ns[f"s{i}"], ns[f"u{i}"] = special
            value = f"None if (v := {get}) is None else s{i}(v)"
            outs.append(f"None if (x := {attr}) is None else u{i}(x, copy)")
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            # Known values are one dict look-up; others go through the enum (kept, see _OpenEnum).
            ns[f"m{i}"] = tp._value2member_map_
            ns[f"e{i}"] = tp
            value = f"None if (v := {get}) is None else (m{i}.get(v) or e{i}(v))"
            outs.append(f"None if (x := {attr}) is None else getattr(x, '_value_', x)")
        elif isinstance(tp, type) and attrs.has(tp):
            _links.append((ns, f"h{i}", tp))
            ns[f"c{i}"] = tp
            value = f"None if (v := {get}) is None else h{i}(v)"
            outs.append(f"None if (x := {attr}) is None else ufns[c{i}](x, copy)")
        elif typing.get_origin(tp) is tuple and attrs.has(typing.get_args(tp)[0]):
            _links.append((ns, f"h{i}", typing.get_args(tp)[0]))
            ns[f"c{i}"] = typing.get_args(tp)[0]
            value = (
                f"None if (v := {get}) is None else "
                f"tuple([h{i}(y) for y in (v if v.__class__ is list "
                f"else expect_object(v, 'a list'))])"
            )
            outs.append(f"None if (x := {attr}) is None else [ufns[c{i}](y, copy) for y in x]")
        else:
            value = get
            # JSON objects and arrays (metadata, a schema, or whatever a server sent) are
            # copied on the way out, so a result shares nothing with the run.
            outs.append(f"thaw(x) if (x := {attr}).__class__ in CONTAINERS and copy else x")
        sets.append(f"o.{f.name} = {value}")
    nl = "\n    "
    name = cls.__name__
    if internable:
        reads = "; ".join(f"v{i} = g({f.name!r})" for i, f in enumerate(fields))
        text = " and ".join(f"(v{i} is None or v{i}.__class__ is str)" for i in range(len(fields)))
        values = "".join(f"v{i}, " for i in range(len(fields)))
        intern_lookup = f"""{reads}
    if u is EMPTY and {text}:
        ikey = (a, {values})
        o = INTERNED.get(ikey)
        if o is not None:
            return o
    else:
        ikey = None"""
        intern_store = """if ikey is not None and len(INTERNED) < MAX_INTERNED:
        INTERNED[ikey] = o"""
    else:
        intern_lookup = intern_store = ""
    structure_src = f"""
def structure_{name}(d):
    if d.__class__ is not dict:
        expect_object(d, {name!r})
    g = d.get
    shape = SHAPES.get(len(d))
    if shape is not None and shape[0].issuperset(d):
        u = EMPTY
        a = shape[1]
    elif KNOWN.issuperset(d):
        u = EMPTY
        a = absent_of(d, exact=True)
    else:
        u = FrozenDict({{k: v for k, v in d.items() if k not in KNOWN}})
        a = absent_of(d, exact=False)
    {intern_lookup}
    o = Builder()
    {nl.join(sets)}
    o.unknown_fields = u
    o._absent = a
    o.__class__ = cls
    {intern_store}
    return o
"""
    items = [f"{f.name!r}: {out}" for f, out in zip(fields, outs, strict=True)]
    unstructure_src = f"""
def unstructure_{name}(o, copy=True):
    d = {{
        {("," + nl + "    ").join(items)},
    }}
    a = o._absent
    if a:
        for k in a:
            if d[k] is None:
                del d[k]
    if o.unknown_fields:
        if copy:
            for k, v in o.unknown_fields.items():
                d[k] = thaw(v) if v.__class__ in CONTAINERS else v
        else:
            d.update(o.unknown_fields)
    return d
"""
    source = structure_src + unstructure_src
    filename = f"<aiorunlist hooks for {name}>"
    # Registered with linecache, so a traceback through a hook shows its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - generated from our own attrs fields, no outside input
    return ns[f"structure_{name}"], ns[f"unstructure_{name}"]


#: (namespace, name, class): a generated hook calls the hook of a nested class directly, by
#: a name filled in once every hook exists.
_links: list[tuple[dict[str, Any], str, type]] = []


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
for _ns, _name, _cls in _links:
    _ns[_name] = _structure_fns[_cls]
_TOOL_HOOKS.update({kind: _structure_fns[cls] for kind, cls in _TOOLS.items()})
_RESPONSE_FORMAT_HOOKS.update(
    {kind: _structure_fns[cls] for kind, cls in _RESPONSE_FORMATS.items()}
)

#: The generated structure hook of :class:`Run` (the hot path calls it directly).
structure_run: Callable[[Any], Run] = _structure_fns[Run]
_unstructure_run = _unstructure_fns[Run]


def unstructure_run_shared(run: Run) -> dict[str, Any]:
    """``unstructure(run)`` without copying the run's JSON objects and arrays: for output
    that is serialised at once and never kept (the CLI's jsonl)."""
    shared: dict[str, Any] = _unstructure_run(run, False)
    return shared


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
        unknown_fields=FrozenDict(unknown) if unknown else EMPTY,
    )


def _unstructure_page(page: RunPage) -> dict[str, Any]:
    d: dict[str, Any] = {
        "object": page.object,
        "data": [_unstructure_run(r) for r in page.data],
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    }
    for k, v in page.unknown_fields.items():
        d[k] = thaw(v)
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
converter.register_unstructure_hook(UnknownTool, lambda t: thaw(t.payload))
converter.register_unstructure_hook(UnknownResponseFormat, lambda t: thaw(t.payload))


def structure(data: Any, cls: type[T]) -> T:
    """Turn decoded JSON (``dict``/``list``) into aiorunlist objects, e.g. ``structure(d, Run)``.

    Raises :class:`TypeError` or :class:`ValueError` if ``data`` does not have the shape of
    ``cls``. Also accepts containers such as ``list[Run]``. The result keeps no reference to
    ``data``'s dicts and lists: editing ``data`` afterwards does not change it.
    """
    return converter.structure(thaw(data), cls)


def unstructure(obj: Any) -> Any:
    """Turn aiorunlist objects back into plain JSON-ready data; the inverse of :func:`structure`.

    Keys the server left out stay out, unknown keys and values come back as sent.
    """
    if isinstance(obj, Mapping):
        return {k: converter.unstructure(v) for k, v in obj.items()}
    return converter.unstructure(obj)
