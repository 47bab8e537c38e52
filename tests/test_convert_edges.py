"""Edges of the converter that the listing's own tests do not reach: values a caller built a
model with, JSON deeper than the stack, and the type checks of fields typed ``Literal | str``."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import aiorunlist
from aiorunlist import Run, StructureError, structure, unstructure
from aiorunlist._convert import copy_json, thaw


def test_a_mapping_that_is_not_a_dict_is_copied_as_plain_json() -> None:
    proxy = types.MappingProxyType({"id": "run_1", "metadata": {"a": 1, "b": [2, (3, "x")]}})
    assert thaw(proxy) == {"id": "run_1", "metadata": {"a": 1, "b": [2, [3, "x"]]}}
    assert type(thaw(proxy)) is dict
    assert thaw(types.MappingProxyType({"n": 1, "s": "x", "z": None})) == {
        "n": 1,
        "s": "x",
        "z": None,
    }
    assert structure(proxy, Run) == Run(id="run_1", metadata={"a": 1, "b": [2, [3, "x"]]})
    assert thaw(7) == 7
    assert thaw("s") == "s"


def _deep(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_json_deeper_than_the_stack_is_copied_exactly() -> None:
    depth = sys.getrecursionlimit() + 100
    value = _deep(depth)
    for copied in (thaw(value), copy_json(value)):  # orjson refuses it: thaw, without recursion
        assert copied is not value
        probe_a, probe_b = copied, value
        for _ in range(depth):
            probe_a = probe_a["k"] if isinstance(probe_b, dict) else probe_a[0]
            probe_b = probe_b["k"] if isinstance(probe_b, dict) else probe_b[0]
            assert probe_a is not probe_b
        assert probe_a == probe_b == {"leaf": 1}


@pytest.mark.parametrize(
    "cls",
    [aiorunlist.CodeInterpreterTool, aiorunlist.FileSearchTool, aiorunlist.FunctionTool],
)
def test_a_tool_type_is_checked_as_a_string(cls: type) -> None:
    # ``type`` is typed ``Literal["..."] | str | None``: any string, never a number.
    assert structure({"type": "a_new_name"}, cls).type == "a_new_name"
    with pytest.raises(StructureError) as info:
        structure({"type": 5}, cls)
    assert info.value.path == ["type"]


def test_unstructure_run_shared_is_unstructure_without_copies() -> None:
    from aiorunlist._convert import structure_run, unstructure_run_shared

    d = {"id": "run_1", "metadata": {"k": ["v"]}, "usage": {"total_tokens": 3}, "x_new": [1]}
    for run in (structure(d, Run), structure_run(dict(d))):
        shared = unstructure_run_shared(run)
        assert shared == d == unstructure(run, copy=False)
        assert shared["metadata"] is run.metadata  # shared, as the CLI writes it at once


def test_a_list_subclass_and_scalars_are_copied_as_plain_json() -> None:
    class Items(list[Any]):
        pass

    copied = thaw(Items([1, (2, "x"), {"k": [None]}]))
    assert copied == [1, [2, "x"], {"k": [None]}]
    assert type(copied) is list
    for value in ("s", 5, None, aiorunlist.RunStatus.COMPLETED):
        assert unstructure(value, copy=False) == value
        assert unstructure(value) == value


def test_a_wrong_scalar_after_a_nested_field_is_named_by_its_own_path() -> None:
    from aiorunlist._convert import structure_run

    # expires_at comes after required_action among the fields: its error is its own.
    d = {"id": "run_1", "required_action": None, "last_error": None, "expires_at": "soon"}
    builds: list[Callable[[], Run]] = [lambda: structure(d, Run), lambda: structure_run(dict(d))]
    for build in builds:
        with pytest.raises(StructureError) as info:
            build()
        assert info.value.path == ["expires_at"]
        assert str(info.value).startswith("expires_at: expected a number, got str")


def test_response_formats_are_typed_by_their_type() -> None:
    def typed(value: Any) -> Any:
        return structure({"id": "run_1", "response_format": value}, Run).response_format

    assert isinstance(typed({"type": "json_object"}), aiorunlist.ResponseFormatJSONObject)
    assert isinstance(typed({"type": "text"}), aiorunlist.ResponseFormatText)
    schema = typed({"type": "json_schema", "json_schema": {"name": "n"}})
    assert isinstance(schema, aiorunlist.ResponseFormatJSONSchema)
    assert typed("auto") == "auto"
    for odd in ({"type": "a_new_format", "x": 1}, {"type": ["json_object"]}, {"type": 5}, {}):
        kept = typed(odd)
        assert isinstance(kept, aiorunlist.UnknownResponseFormat)
        assert kept.payload == odd


def test_unstructure_of_a_page_a_mapping_and_an_unknown_tool_copies_unless_asked() -> None:
    d = {"id": "run_1", "metadata": {"k": ["v"]}}
    page = structure({"object": "list", "data": [d], "has_more": False}, aiorunlist.RunPage)
    out = unstructure(page)
    assert out["data"] == [d]
    out["data"][0]["metadata"]["k"].append("edited")
    assert page.data[0].metadata == {"k": ["v"]}
    run = page.data[0]
    assert unstructure(page, copy=False)["data"][0]["metadata"] is run.metadata
    for copy in (True, False):
        by_name = unstructure({"a": run, "b": [run]}, copy=copy)
        assert by_name == {"a": d, "b": [d]}
        assert (by_name["a"]["metadata"] is run.metadata) is not copy
    tool = aiorunlist.UnknownTool("a_new_tool", {"type": "a_new_tool", "x": [1]})
    assert unstructure(tool, copy=False) is tool.payload
    assert unstructure(tool) == tool.payload
    assert unstructure(tool) is not tool.payload


@pytest.mark.parametrize("value", ["hot", True, [1.0], {"v": 1}])
def test_a_float_field_takes_numbers_only(value: Any) -> None:
    assert structure({"temperature": 1}, Run).temperature == 1  # an int where a float goes
    with pytest.raises(StructureError) as info:
        structure({"temperature": value}, Run)
    assert info.value.path == ["temperature"]


def test_a_page_without_has_more_has_no_more() -> None:
    page = structure({"object": "list", "data": []}, aiorunlist.RunPage)
    assert page.has_more is False


def test_runs_of_more_key_sets_than_are_remembered_round_trip() -> None:
    # Each run leaves out a different set of keys: past the shapes the hooks remember, the
    # keys left out are still told (and left out again by unstructure).
    from aiorunlist._convert import structure_run

    keys = [
        "model",
        "instructions",
        "started_at",
        "expires_at",
        "failed_at",
        "completed_at",
        "top_p",
    ]
    runs = []
    for mask in range(1, 2 ** len(keys)):
        d: dict[str, Any] = {"id": f"run_{mask}"}
        d.update({k: None for i, k in enumerate(keys) if mask >> i & 1})
        runs.append(d)
    assert len(runs) > 100
    for d in runs:
        assert unstructure(structure(d, Run)) == d
        assert unstructure(structure_run(dict(d))) == d


@pytest.mark.parametrize(
    "extra",
    [
        {"validator": attrs.validators.instance_of(int)},
        {"converter": int},
        {"hook": "__attrs_post_init__"},
        {"hook": "__attrs_pre_init__"},
    ],
)
def test_a_model_the_hooks_cannot_build_is_refused(extra: dict[str, Any]) -> None:
    # The hooks write fields directly: nothing attrs' __init__ would run may exist.
    from aiorunlist._convert import _generate
    from aiorunlist._models import EMPTY

    hook = extra.pop("hook", None)

    @attrs.frozen
    class Odd:
        x: int | None = attrs.field(default=None, **extra)
        unknown_fields: Any = attrs.field(default=EMPTY, kw_only=True)
        _absent: frozenset[str] = attrs.field(default=frozenset(), kw_only=True)

    if hook is not None:
        setattr(Odd, hook, lambda self: None)
    with pytest.raises(TypeError, match="skip"):
        _generate(Odd)


def test_thaw_copies_every_container_of_a_list() -> None:
    value: list[Any] = [{"a": [1]}, [{"b": 2}], (3,), "s"]
    copied = thaw(value)
    assert copied == [{"a": [1]}, [{"b": 2}], [3], "s"]
    assert copied[0] is not value[0]
    assert copied[0]["a"] is not value[0]["a"]
    assert copied[1][0] is not value[1][0]


def test_a_nested_error_in_a_page_has_the_whole_path() -> None:
    body = {"object": "list", "data": [{"id": "r0"}, {"usage": {"prompt_tokens": "x"}}]}
    with pytest.raises(StructureError) as info:
        structure(body, aiorunlist.RunPage)
    assert info.value.path == ["data", 1, "usage", "prompt_tokens"]


def test_small_value_objects_are_shared_and_runs_are_not() -> None:
    from aiorunlist._convert import structure_run_eager

    d = {"id": "run_1", "truncation_strategy": {"type": "auto", "last_messages": None}}
    a, b = structure_run_eager(dict(d)), structure_run_eager(dict(d))
    assert a == b
    assert a is not b
    assert a.truncation_strategy is b.truncation_strategy  # an internable class
    u = {"id": "run_1", "usage": {"total_tokens": None}}
    assert structure_run_eager(dict(u)).usage is not structure_run_eager(dict(u)).usage


def test_a_page_keeps_its_unknown_keys_only() -> None:
    body = {"object": "list", "data": [], "has_more": False, "first_id": None, "x_extra": [1]}
    page = structure(body, aiorunlist.RunPage)
    assert page.unknown_fields == {"x_extra": [1]}
    assert unstructure(page) == {**body, "last_id": None}
