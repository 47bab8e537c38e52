"""Models and conversion: the spec's examples, generated runs, forward compatibility."""

from __future__ import annotations

import copy
from typing import Any

import attrs
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist import Run, RunStatus, structure, unstructure
from tests.schema_strategy import from_schema
from tests.spec_schema import spec_examples, spec_schema

FULL_RUN: dict[str, Any] = spec_examples()[0]["data"][0]

MINIMAL_RUN: dict[str, Any] = {
    "id": "run_1",
    "object": "thread.run",
    "created_at": 1699075072,
    "thread_id": "thread_1",
    "assistant_id": "asst_1",
    "status": "completed",
    "completed_at": 1699075073,
}


def roundtrip(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = unstructure(structure(copy.deepcopy(d), Run))
    return result


def test_spec_examples_structure_and_roundtrip() -> None:
    examples = spec_examples()
    assert examples
    for body in examples:
        page = structure(body, aiorunlist.RunPage)
        assert len(page.data) == len(body["data"])
        assert page.first_id == body["first_id"]
        assert unstructure(page) == body
        for raw, run in zip(body["data"], page.data, strict=True):
            assert run.id == raw["id"]
            assert roundtrip(raw) == raw


def test_full_run_fields() -> None:
    run = structure(FULL_RUN, Run)
    assert run.status == "completed"
    assert run.status is RunStatus.COMPLETED
    assert run.instructions is None
    assert run.tools == (aiorunlist.CodeInterpreterTool(),)
    assert run.usage == aiorunlist.Usage(prompt_tokens=123, completion_tokens=456, total_tokens=579)
    assert run.truncation_strategy is not None
    assert run.truncation_strategy.type == "auto"
    assert run.tool_resources == FULL_RUN["tool_resources"]
    assert run.response_format == "auto"
    assert run.unknown_fields == {}


def test_minimal_run_reads_none_and_stays_minimal() -> None:
    run = structure(MINIMAL_RUN, Run)
    assert run.usage is None
    assert run.tools is None
    assert run.last_error is None
    assert unstructure(run) == MINIMAL_RUN


def test_null_is_kept_distinct_from_missing() -> None:
    d = {**MINIMAL_RUN, "usage": None, "instructions": None}
    assert roundtrip(d) == d
    assert "usage" in roundtrip(d)
    assert "tools" not in roundtrip(d)


def test_evolved_field_that_was_missing_is_written() -> None:
    run = attrs.evolve(structure(MINIMAL_RUN, Run), model="gpt-4o")
    assert unstructure(run)["model"] == "gpt-4o"


def test_unknown_status_is_kept() -> None:
    run = structure({**MINIMAL_RUN, "status": "paused_for_review"}, Run)
    assert run.status == "paused_for_review"
    assert isinstance(run.status, RunStatus)
    assert run.status is not None
    assert not run.status.is_known
    assert str(run.status) == "paused_for_review"
    assert f"{run.status}" == "paused_for_review"
    assert unstructure(run)["status"] == "paused_for_review"
    assert type(unstructure(run)["status"]) is str


@pytest.mark.parametrize("status", [s.value for s in RunStatus])
def test_known_status_prints_plainly(status: str) -> None:
    member = RunStatus(status)
    assert member.is_known
    assert str(member) == status
    assert f"{member}" == status
    assert f"{member}" == status
    assert {status: 1}[member] == 1
    by_member: dict[str, int] = {member: 1}
    assert by_member[status] == 1
    assert member == status


def test_status_terminal() -> None:
    assert RunStatus.COMPLETED.is_terminal
    assert not RunStatus.QUEUED.is_terminal
    assert not RunStatus("paused_for_review").is_terminal


def test_unknown_tool_and_fields_are_kept() -> None:
    d = {
        **MINIMAL_RUN,
        "tools": [
            {"type": "browser", "config": {"depth": 2}},
            {"type": "function", "function": {"name": "f", "future": True}, "x": 1},
            {"type": "file_search", "file_search": {"max_num_results": 5}},
        ],
        "response_format": {"type": "xml", "root": "r"},
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "brand_new": [1, 2],
        "last_error": {"message": "boom"},
    }
    run = structure(d, Run)
    assert run.tools is not None
    unknown = run.tools[0]
    assert isinstance(unknown, aiorunlist.UnknownTool)
    assert unknown.type == "browser"
    assert unknown.payload == d["tools"][0]
    fn = run.tools[1]
    assert isinstance(fn, aiorunlist.FunctionTool)
    assert fn.function is not None
    assert fn.function.name == "f"
    assert fn.function.unknown_fields == {"future": True}
    assert fn.unknown_fields == {"x": 1}
    assert isinstance(run.tools[2], aiorunlist.FileSearchTool)
    assert isinstance(run.response_format, aiorunlist.UnknownResponseFormat)
    assert isinstance(run.tool_choice, aiorunlist.NamedToolChoice)
    assert run.unknown_fields == {"brand_new": [1, 2]}
    assert run.last_error is not None
    assert run.last_error.code is None
    assert roundtrip(d) == d


@pytest.mark.parametrize(
    ("field", "value"),
    [("usage", "lots"), ("tools", {"type": "function"}), ("status", 5), ("tools", [3])],
)
def test_wrong_shapes_raise(field: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        structure({**MINIMAL_RUN, field: value}, Run)


def test_structure_list_of_runs() -> None:
    runs = structure([MINIMAL_RUN, FULL_RUN], list[Run])
    assert [r.id for r in runs] == ["run_1", FULL_RUN["id"]]


def test_required_action_tool_calls() -> None:
    d = {
        **MINIMAL_RUN,
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ]
            },
        },
    }
    run = structure(d, Run)
    assert run.required_action is not None
    assert run.required_action.submit_tool_outputs is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert calls is not None
    assert calls[0].function == aiorunlist.FunctionCall(name="f", arguments="{}")
    assert roundtrip(d) == d


# Property: every RunObject the schema admits (unknown keys, nulls, unions included) survives.
_RUN_SCHEMA = spec_schema("RunObject")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(from_schema(_RUN_SCHEMA))
def test_generated_runs_roundtrip(run: dict[str, Any]) -> None:
    assert roundtrip(run) == run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {"id": st.text(min_size=1)},
        optional={
            **{k: st.none() | st.text() for k in ("model", "instructions", "reasoning_effort")},
            # Lax servers send timestamps as floats: kept as sent, like integers.
            **{
                k: st.none() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                for k in ("created_at", "expires_at")
            },
        },
    ),
    st.dictionaries(
        st.text().filter(lambda k: k not in attrs.fields_dict(Run)), st.integers(), max_size=3
    ),
)
def test_sparse_runs_roundtrip(base: dict[str, Any], extra: dict[str, Any]) -> None:
    d = {**base, **extra}
    assert roundtrip(d) == d


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"id": 5}, "id: expected a string, got int"),
        ({"id": {"a": 1}}, "id: expected a string, got dict"),
        ({"created_at": "2024-01-01"}, "created_at: expected a number, got str"),
        ({"created_at": True}, "created_at: expected a number, got bool"),
        ({"parallel_tool_calls": 1}, "parallel_tool_calls: expected a boolean"),
        ({"metadata": [1]}, "metadata: expected a JSON object, got list"),
        ({"status": 5}, "status: expected a string"),
        ({"usage": {"total_tokens": "x"}}, "usage.total_tokens: expected a number"),
        ({"usage": "x"}, "usage: expected a JSON object for Usage"),
        ({"tools": [{"type": "function", "function": {"name": 3}}]}, r"tools\[0\].function.name"),
        ({"tools": [{"type": "file_search"}, 1]}, r"tools\[1\]: expected a JSON object"),
        ({"tools": {}}, "tools: expected a JSON array"),
        (
            {"required_action": {"submit_tool_outputs": {"tool_calls": [{"id": 1}]}}},
            "required_action.submit_tool_outputs.tool_calls.id: expected a string",
        ),
        ({"tool_choice": 3}, "tool_choice: expected a JSON object"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(
    data: dict[str, Any], path: str
) -> None:
    with pytest.raises(aiorunlist.StructureError, match=path) as info:
        structure({**MINIMAL_RUN, **data}, Run)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, ValueError)


def test_a_page_names_the_run_that_failed() -> None:
    body = {"object": "list", "data": [MINIMAL_RUN, {**MINIMAL_RUN, "id": 7}], "has_more": False}
    with pytest.raises(aiorunlist.StructureError, match=r"^data\[1\].id: expected a string"):
        structure(body, aiorunlist.RunPage)
    with pytest.raises(aiorunlist.StructureError, match="id: expected a string"):
        structure([MINIMAL_RUN, {"id": 7}], list[Run])


def test_subclasses_of_the_expected_types_are_accepted() -> None:
    class Name(str):
        pass

    run = structure({"id": Name("run_1"), "status": RunStatus.COMPLETED, "temperature": 1}, Run)
    assert run.id == "run_1"
    assert run.status is RunStatus.COMPLETED


def test_models_are_frozen() -> None:
    run = structure(MINIMAL_RUN, Run)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        run.id = "x"  # type: ignore[misc]


def test_enum_format_spec_applies_to_the_value() -> None:
    assert format(RunStatus.FAILED, ">8") == "  failed"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_schema(_RUN_SCHEMA))
def test_generated_runs_are_valid_against_the_spec(run: dict[str, Any]) -> None:
    # Keeps the strategy honest: what the round-trip test feeds in is what the spec admits.
    jsonschema.Draft202012Validator(_RUN_SCHEMA).validate(run)


def test_models_pickle_copy_and_hash() -> None:
    import pickle

    d = {**FULL_RUN, "brand_new": {"x": [1]}}
    run = structure(d, Run)
    pickled = pickle.loads(pickle.dumps(run))  # noqa: S301 - our own bytes, just made
    for clone in (pickled, copy.deepcopy(run), copy.copy(run)):
        assert clone == run
        assert type(clone) is Run
        assert unstructure(clone) == d
    assert hash(run) == hash(structure(copy.deepcopy(d), Run))
    assert len({run, structure(copy.deepcopy(d), Run)}) == 1


def test_unknown_fields_are_read_only() -> None:
    run = structure({**MINIMAL_RUN, "extra": 1}, Run)
    with pytest.raises(TypeError, match="read-only"):
        run.unknown_fields["x"] = 2  # type: ignore[index]
    assert run.unknown_fields == {"extra": 1}


def test_unstructure_models_built_by_hand() -> None:
    run = Run(
        id="run_1",
        status="queued",  # type: ignore[arg-type]
        response_format={"type": "text"},  # type: ignore[arg-type]
        tool_choice="auto",
    )
    out = unstructure(run)
    assert out["status"] == "queued"
    assert out["response_format"] == {"type": "text"}
    evolved = attrs.evolve(structure(MINIMAL_RUN, Run), status="failed")  # type: ignore[arg-type]
    assert unstructure(evolved)["status"] == "failed"
