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
import json
import linecache
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import orjson

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
from .exceptions import APIResponseValidationError

__all__ = [
    "StructureError",
    "converter",
    "copy_json",
    "dumps",
    "failing_index",
    "structure",
    "structure_run",
    "structure_run_eager",
    "thaw",
    "unstructure",
    "unstructure_run_shared",
]

T = TypeVar("T")

StructureFn = Callable[[Any], Any]
UnstructureFn = Callable[..., Any]

_structure_fns: dict[type, StructureFn] = {}
_unstructure_fns: dict[type, UnstructureFn] = {}


class StructureError(TypeError, ValueError):
    """Data that does not have the shape of the class asked for, from :func:`structure`.

    A subclass of both :class:`TypeError` and :class:`ValueError` (what ``structure()`` raised
    before it existed, so existing ``except`` clauses keep working). ``path`` locates the value
    from the top of the data, e.g. ``["tools", 1, "function", "name"]``, shown in the message
    as ``tools[1].function.name``; ``detail`` says what was wrong with it.
    """

    def __init__(self, detail: str, path: list[str | int] | None = None) -> None:
        super().__init__(detail)
        #: What was wrong, without the location.
        self.detail = detail
        #: Where: field names and list indexes, outermost first.
        self.path: list[str | int] = [] if path is None else path
        # Set while the error is on its way out of the hook that raised it (see _generate).
        self._leaf = False
        # ``detail`` without the value it quotes (server text): what a run typed late says.
        self._plain = detail

    @property
    def location(self) -> str:
        """``path`` as text: ``tools[1].function.name``."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text.lstrip(".")

    def __str__(self) -> str:
        where = self.location
        return f"{where}: {self.detail}" if where else self.detail

    def __repr__(self) -> str:
        return f"StructureError({str(self)!r})"


def _expect_object(value: object, what: str) -> typing.NoReturn:
    plain = f"expected a JSON object for {what}, got {type(value).__name__}"
    error = StructureError(f"{plain}: {value!r:.80}")
    error._plain = plain
    raise error


def _leaf_error(field: str, expected: str, value: object) -> StructureError:
    plain = f"expected {expected}, got {type(value).__name__}"
    error = StructureError(f"{plain}: {value!r:.80}", [field])
    error._leaf = True
    error._plain = plain
    return error


#: What a scalar field accepts once its fast check (the exact class) failed: subclasses
#: (a ``str`` subclass, an ``int`` where a float goes, a float where an integer goes, as lax
#: servers send timestamps), never a ``bool`` for a number.
_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    ),
    "float": (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    ),
    "bool": ("a boolean", lambda v: isinstance(v, bool)),
    "object": ("a JSON object", lambda v: isinstance(v, Mapping)),
}
#: The fast check of each kind, as generated code (``v`` is the value; ``None`` is tested
#: after it, as most values are not ``None``).
_FAST: dict[str, str] = {
    "str": "v.__class__ is str",
    "int": "v.__class__ is int",
    "float": "v.__class__ is float or v.__class__ is int",
    "bool": "v.__class__ is bool",
    "object": "v.__class__ is dict",
}


def _checked(value: Any, field: str, kind: str) -> Any:
    """``value`` if a ``kind`` field may hold it (the slow path), else a StructureError."""
    expected, accepts = _KINDS[kind]
    if accepts(value):
        return value
    raise _leaf_error(field, expected, value)


def _enum_value(enum_cls: Any, value: Any, field: str) -> Any:
    """An enum field's value that is not a plain ``str`` (a member, a subclass), or an error."""
    if isinstance(value, str):
        return enum_cls(value)
    raise _leaf_error(field, "a string", value)


def _kind(tp: Any) -> str | None:
    """The scalar kind a field of type ``tp`` is checked as (``None``: not checked here)."""
    if tp in (str, int, float, bool):
        return str(tp.__name__)
    if tp is dict or typing.get_origin(tp) is dict:
        return "object"
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and str in args:
        rest = [a for a in args if a is not str and a is not type(None)]
        if all(typing.get_origin(a) is typing.Literal for a in rest):
            return "str"  # Literal["function"] | str
    return None


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
        raise StructureError(f"expected a JSON array, got {type(value).__name__}")
    hooks = _TOOL_HOOKS
    tools = []
    try:
        for tool in value:  # one loop, no call per tool but its own hook's
            if tool.__class__ is not dict:
                _expect_object(tool, "a tool")
            kind = tool.get("type")
            hook = hooks.get(kind) if kind.__class__ is str else None
            tools.append(UnknownTool(kind, tool) if hook is None else hook(tool))
    except StructureError as exc:
        exc.path.insert(0, len(tools))  # the index of the tool that failed
        raise
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
    if value.__class__ is not dict:
        _expect_object(value, "tool_choice (or a string)")
    return _structure_fns[NamedToolChoice](value)


#: The containers a JSON value may be made of: what :func:`thaw` copies.
_CONTAINERS: frozenset[type] = frozenset({dict, list, tuple, FrozenDict})


def thaw(value: Any) -> Any:
    """A deep copy of a JSON value, as plain ``dict`` and ``list`` containers.

    What :func:`unstructure` hands out and :func:`structure` keeps, so that a run shares no
    container with its caller: editing one result changes neither the run nor the next result.
    Scalars (strings, numbers, ``None``) are immutable and shared.
    """
    try:
        return _thaw(value)
    except RecursionError:  # nested deeper than the stack allows (JSON allows 1024 levels)
        return _thaw_deep(value)


def copy_json(value: Any) -> Any:
    """:func:`thaw` for decoded JSON, at C speed: an orjson round trip (a third of the time),
    or :func:`thaw` for what orjson will not write (integers beyond 64 bits, lone surrogates,
    JSON nested too deeply)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return thaw(value)


def _thaw_deep(value: Any) -> Any:
    """:func:`thaw` without recursion, for values nested too deeply for the stack."""
    root: list[Any] = [None]
    todo: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while todo:
        item, parent, key = todo.pop()
        if isinstance(item, Mapping):
            copy: Any = {}
            todo.extend((v, copy, k) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            copy = [None] * len(item)
            todo.extend((v, copy, i) for i, v in enumerate(item))
        else:
            copy = item
        parent[key] = copy
    return root[0]


def _thaw(value: Any) -> Any:
    c = value.__class__
    if c is dict or c is FrozenDict:
        return {k: _thaw(v) if v.__class__ in _CONTAINERS else v for k, v in value.items()}
    if c is list or c is tuple:
        return [_thaw(v) if v.__class__ in _CONTAINERS else v for v in value]
    if isinstance(value, Mapping):  # another mapping a caller built a model with
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
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
    # The fields' own slot descriptors, so that the stores stay plain slot stores even where
    # the class puts another descriptor in front of the slot (see _Late).
    slots = {
        f.name: d.slot if isinstance(d := cls.__dict__[f.name], _Late) else d
        for f in attrs.fields(cls)
        if f.name in cls.__dict__
    }
    return type(
        f"_{cls.__name__}Builder",
        (cls,),
        {
            "__slots__": (),
            "__init__": object.__init__,
            "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__,
            "__module__": __name__,
            **slots,
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


def _generate(cls: type, *, late: bool = False) -> tuple[StructureFn, UnstructureFn]:
    """Generate the structure and unstructure functions of one model class.

    With ``late`` (for :class:`Run` in a listing), the nested objects a JSON object or array
    of the right kind was sent for are left untyped: their slots hold that JSON value, the
    run is marked ``_listed``, and a :class:`_Late` descriptor types them on first read
    (``_LATE`` maps each such field to its hook). A value of the wrong JSON type for the
    field itself is refused here all the same. The unstructure function reads those slots
    directly: a value not typed yet is copied (or shared) as it is.

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
        "checked": _checked,
        "enum_value": _enum_value,
        "StructureError": StructureError,
        "ufns": _unstructure_fns,
        "thaw": thaw,
        "CONTAINERS": _CONTAINERS,
        "INTERNED": {},
        "MAX_INTERNED": _MAX_INTERNED,
    }
    sets: list[str] = []
    outs: list[str] = []
    nested = False
    late_fields: dict[str, tuple[str, str]] = {}  # field -> (hook's name in ns, JSON class)
    for i, f in enumerate(fields):
        key = repr(f.name)
        get = f"g({key})"
        attr = f"o.{f.name}"
        tp = _strip_none(f.type)
        special = _SPECIAL.get((cls, f.name))
        if internable:
            get = f"v{i}"  # read once, before the shared-instance look-up
        # A nested value's errors get this field's name in their path (see the except below).
        at = f"at = {key}; "
        if special is not None:
            ns[f"s{i}"], ns[f"u{i}"] = special
            value = f"None if (v := {get}) is None else s{i}(v)"
            late_fields[f.name] = (f"s{i}", "list" if f.name == "tools" else "dict")
            outs.append(f"None if (x := {_read(ns, i, cls, f.name)}) is None else u{i}(x, copy)")
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            # Known values are one dict look-up; others go through the enum (kept, see _OpenEnum).
            ns[f"m{i}"] = tp._value2member_map_
            ns[f"e{i}"] = tp
            value = (
                f"None if (v := {get}) is None else ((m{i}.get(v) or e{i}(v)) "
                f"if v.__class__ is str else enum_value(e{i}, v, {key}))"
            )
            outs.append(f"None if (x := {attr}) is None else getattr(x, '_value_', x)")
            at = ""
        elif isinstance(tp, type) and attrs.has(tp):
            _links.append((ns, f"h{i}", tp))
            ns[f"c{i}"] = tp
            value = f"None if (v := {get}) is None else h{i}(v)"
            late_fields[f.name] = (f"h{i}", "dict")
            outs.append(
                f"None if (x := {_read(ns, i, cls, f.name)}) is None else "
                f"(thaw(x) if copy else x) if x.__class__ is dict else ufns[c{i}](x, copy)"
            )
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
            kind = _kind(tp)
            if kind is None:
                value = get
            else:
                # The exact class is one comparison; anything else takes the slow path,
                # which accepts subclasses and raises for the rest.
                fast = _FAST[kind].replace("v.", f"(v := {get}).", 1)  # the first test reads
                value = f"v if {fast} or v is None else checked(v, {key}, {kind!r})"
            # JSON objects and arrays (metadata, a schema, or whatever a server sent) are
            # copied on the way out, so a result shares nothing with the run.
            outs.append(f"thaw(x) if copy and (x := {attr}).__class__ in CONTAINERS else {attr}")
            at = ""
        nested = nested or bool(at)
        if late and f.name in late_fields:
            # Kept as sent (typed on first read, see _Late) when it is a JSON value of the
            # right kind; anything else is typed (None, a string) or refused now.
            hook, json_class = late_fields[f.name]
            sets.append(
                f"{at}o.{f.name} = v if (v := {get}).__class__ is {json_class} "
                f"else None if v is None else {hook}(v)"
            )
            _LATE[f.name] = (ns, hook, list if json_class == "list" else dict)
        else:
            sets.append(f"{at}o.{f.name} = {value}")
    if late:
        sets.append("o._listed = True")  # its dicts and lists in those fields are JSON as sent
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
    at = None
    try:
        {intern_lookup}
        o = Builder()
        {(nl + "    ").join(sets)}
    except StructureError as exc:
        if exc._leaf:  # raised for a field of this object: its path is that field
            exc._leaf = False
        elif at is not None:  # raised inside the value of field `at`
            exc.path.insert(0, at)
        raise
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


def _read(ns: dict[str, Any], i: int, cls: type, name: str) -> str:
    """Code that reads field ``name`` of ``o`` from its slot, past any descriptor in front."""
    descriptor = cls.__dict__[name]
    ns[f"S{i}"] = descriptor.slot if isinstance(descriptor, _Late) else descriptor
    return f"S{i}.__get__(o, cls)"


class _LateFieldError(StructureError, APIResponseValidationError):
    """A nested object of a listed run, typed on first read, that has the wrong shape."""

    def __init__(self, path: list[str | int], plain: str) -> None:
        detail = (
            f"{plain} (the server sent a run whose nested object has the wrong type; "
            "a listed run types its nested objects when they are first read)"
        )
        StructureError.__init__(self, detail, path)
        # What a RunListError has (its __init__ is not called: StructureError's text stands).
        self.message = str(self)
        self.thread_id = None
        self.not_retried = None
        self.status_code = 200
        self.request_id = None
        self.retryable = False

    def __str__(self) -> str:
        return StructureError.__str__(self)


class _Late:
    """The descriptor of a :class:`Run` field that a listed run types on first read.

    It wraps the field's own slot (``slot``). A listed run keeps the JSON object (or array)
    it was sent in the slot until the first read, which types it, once, and puts the typed
    value in its place; a typed value (or ``None``, or a string) is returned as it is. A run
    built another way is not ``_listed``: its values are returned as they are, even a dict a
    caller put there. The error for a wrong type inside the object quotes no value (server
    text, and the run does not know the API key to mask it): only the path and the JSON
    types.
    """

    __slots__ = ("hook", "json_class", "name", "slot")

    def __init__(self, name: str, hook: StructureFn, json_class: type, slot: Any) -> None:
        self.name = name
        self.hook = hook
        self.json_class = json_class
        self.slot = slot

    def __get__(self, run: Any, owner: Any = None) -> Any:
        if run is None:
            return self
        value = self.slot.__get__(run, owner)
        if value.__class__ is not self.json_class or not getattr(run, "_listed", False):
            return value
        failed: StructureError | None = None
        try:
            value = self.hook(value)
        except StructureError as exc:
            failed = exc
        if failed is None:
            self.slot.__set__(run, value)
            return value
        path, plain = [self.name, *failed.path], failed._plain
        del failed  # raised outside the except block: it quotes the value
        raise _LateFieldError(path, plain)

    def __set__(self, run: Any, value: Any) -> None:
        self.slot.__set__(run, value)


#: (namespace, name, class): a generated hook calls the hook of a nested class directly, by
#: a name filled in once every hook exists.
_links: list[tuple[dict[str, Any], str, type]] = []

#: The fields a listed run types on first read -> (the namespace of its hook, the hook's name,
#: the JSON class it is typed from).
_LATE: dict[str, tuple[dict[str, Any], str, type]] = {}


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
structure_run: Callable[[Any], Run] = _generate(Run, late=True)[0]
"""The hook of the listings: a :class:`Run` whose nested objects are typed on first read."""
for _ns, _name, _cls in _links:
    _ns[_name] = _structure_fns[_cls]
_TOOL_HOOKS.update({kind: _structure_fns[cls] for kind, cls in _TOOLS.items()})
_RESPONSE_FORMAT_HOOKS.update(
    {kind: _structure_fns[cls] for kind, cls in _RESPONSE_FORMATS.items()}
)

#: The generated structure hook of :class:`Run` that types every nested object at once.
structure_run_eager: Callable[[Any], Run] = _structure_fns[Run]
_unstructure_run = _unstructure_fns[Run]
for _name, (_ns, _hook, _json_class) in _LATE.items():
    setattr(Run, _name, _Late(_name, _ns[_hook], _json_class, Run.__dict__[_name]))


def unstructure_run_shared(run: Run) -> dict[str, Any]:
    """``unstructure(run, copy=False)`` for one run, without the dispatch (the CLI's jsonl)."""
    shared: dict[str, Any] = _unstructure_run(run, False)
    return shared


def failing_index(hook: Callable[[Any], Any], items: list[Any]) -> int:
    """The index of the first item ``hook`` refuses (after a failure: not on the hot path)."""
    for i, item in enumerate(items):
        try:
            hook(item)
        except StructureError:
            return i
    return len(items)  # pragma: no cover - the hook failed once, so one item fails again


def structure_page_body(
    body: Any, *, request_id: str | None = None, run_hook: Callable[[Any], Run] = structure_run
) -> RunPage:
    """Structure a decoded list response (``{"object": "list", "data": [...], ...}``)."""
    if body.__class__ is not dict:
        _expect_object(body, "a list response")
    data = body.get("data")
    if data.__class__ is not list:
        raise StructureError(f"expected a JSON array, got {type(data).__name__}", ["data"])
    has_more = body.get("has_more", False)
    if has_more.__class__ is not bool:
        raise StructureError(f"expected a boolean, got {has_more!r:.40}", ["has_more"])
    for name in ("first_id", "last_id", "object"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise _leaf_error(name, "a string", value)
    try:
        runs = tuple([run_hook(r) for r in data])
    except StructureError as exc:
        exc.path[:0] = ["data", failing_index(run_hook, data)]
        raise
    unknown = {
        k: v
        for k, v in body.items()
        if k not in ("object", "data", "first_id", "last_id", "has_more")
    }
    return RunPage(
        data=runs,
        has_more=has_more,
        first_id=body.get("first_id"),
        last_id=body.get("last_id"),
        object=body.get("object"),
        request_id=request_id,
        unknown_fields=FrozenDict(unknown) if unknown else EMPTY,
    )


def _unstructure_page(page: RunPage, copy: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "object": page.object,
        "data": [_unstructure_run(r, copy) for r in page.data],
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    }
    for k, v in page.unknown_fields.items():
        d[k] = thaw(v) if copy else v
    return d


def _unstructure_shared(obj: Any) -> Any:
    """:func:`unstructure` with ``copy=False``."""
    fn = _unstructure_fns.get(obj.__class__)
    if fn is not None:
        return fn(obj, False)
    if obj.__class__ is RunPage:
        return _unstructure_page(obj, False)
    if obj.__class__ in (UnknownTool, UnknownResponseFormat):
        return obj.payload
    if isinstance(obj, Mapping):
        return {k: _unstructure_shared(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_unstructure_shared(v) for v in obj]
    return converter.unstructure(obj)


# Errors come out as themselves (a StructureError naming the field), not as an ExceptionGroup.
converter = cattrs.Converter(detailed_validation=False)


def _as_cattrs_hook(fn: StructureFn) -> Callable[[Any, Any], Any]:
    def hook(data: Any, _type: Any) -> Any:
        return fn(data)

    return hook


for _cls, _fn in _structure_fns.items():
    converter.register_structure_hook(_cls, _as_cattrs_hook(_fn))
for _cls, _ufn in _unstructure_fns.items():
    converter.register_unstructure_hook(_cls, _ufn)
converter.register_structure_hook(
    RunPage, lambda d, _: structure_page_body(d, run_hook=structure_run_eager)
)
converter.register_unstructure_hook(RunPage, _unstructure_page)
converter.register_unstructure_hook(UnknownTool, lambda t: thaw(t.payload))
converter.register_unstructure_hook(UnknownResponseFormat, lambda t: thaw(t.payload))


def structure(data: Any, cls: type[T]) -> T:
    """Turn decoded JSON (``dict``/``list``) into aiorunlist objects, e.g. ``structure(d, Run)``.

    Raises :class:`StructureError` (a :class:`TypeError` and a :class:`ValueError`) naming
    the field if ``data`` does not have the shape of ``cls``: a JSON object where one is
    expected, a string for an id, a number for a timestamp, and so on. Also accepts
    containers such as ``list[Run]``. The result keeps no reference to
    ``data``'s dicts and lists: editing ``data`` afterwards does not change it.
    """
    return converter.structure(thaw(data), cls)


def unstructure(obj: Any, *, copy: bool = True) -> Any:
    """Turn aiorunlist objects back into plain JSON-ready data; the inverse of :func:`structure`.

    Keys the server left out stay out, unknown keys and values come back as sent. The result
    is yours: its dicts and lists are fresh copies, so editing it changes neither the run nor
    a later result.

    :param copy: ``False`` skips copying the JSON objects and arrays the run holds as they
        are (``metadata``, unknown fields, a tool's JSON schema): the result shares them with
        the run, so it must be read only, e.g. serialised at once with
        ``orjson.dumps(unstructure(run, copy=False))``. Faster for runs with large schemas.

    To write a run as JSON, :func:`aiorunlist.dumps` does it in one step, and exactly: servers
    send integers wider than 64 bits (in ``metadata``, ``usage``, unknown fields), which
    ``unstructure()`` keeps as Python integers, and which ``orjson.dumps`` refuses.
    """
    if not copy:
        return _unstructure_shared(obj)
    if isinstance(obj, Mapping):
        return {k: converter.unstructure(v) for k, v in obj.items()}
    return converter.unstructure(obj)


def _finite(value: Any) -> Any:
    """``value`` (plain JSON) with every float that is not finite replaced by ``None``."""
    if isinstance(value, float):
        return value if value - value == 0 else None  # NaN and infinities give NaN
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> bytes:
    """The JSON of a run, as UTF-8 bytes: ``orjson.dumps(unstructure(run))``, but for every run.

    Accepts what :func:`unstructure` accepts (a :class:`Run`, a :class:`RunPage`, a list or
    dict of them, plain JSON). Keys come out in the run's field order, then its unknown keys;
    keys the server left out stay out. ``structure(orjson.loads(dumps(run)), Run) == run``.

    Integers wider than 64 bits, which servers send in ``metadata``, ``usage`` or fields this
    library does not know, and which ``orjson.dumps`` refuses, are written exactly (by the
    standard library's encoder, used only for such values: orjson writes the rest). Decode
    the result with a decoder that keeps them exact (``json.loads``; ``orjson.loads`` turns
    them into floats).

    A float that is not finite (which no server's JSON holds, only a run a caller built) is
    written as ``null``, as orjson writes it. Raises :class:`TypeError` for a value orjson
    cannot write either (an object a caller put in a run they built).
    """
    data = _unstructure_shared(obj)  # serialised at once, so it need not be a copy
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:
        pass  # an integer beyond 64 bits, or a lone surrogate: the exact encoder below
    data = _finite(data)  # null for NaN and infinities, as orjson writes them
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (sent as an escape): escaped again
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")
