"""A listed run types its nested objects when they are first read.

The listings (``runs``, ``runs_many``, ``pages_many``, ``list_page``) build each ``Run`` with
its own fields checked and typed, and leave the nested objects (``tools``, ``usage``, ...)
to be typed on first read, from the decoded object the run keeps. These tests hold that to
the promises of the eager path: the same values, equality, hashing, copies, the round trip,
and a clear error naming the field, without the API key, for a wrong type found late.
"""

from __future__ import annotations

import copy
import pickle
import types
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

import aiorunlist
from aiorunlist import Run, StructureError, structure, unstructure
from aiorunlist._convert import _Late, structure_run, structure_run_eager
from aiorunlist.testing import MockResponse, MockTransport, make_runs
from tests.conftest import API_KEY, SOCKETLESS_URL, fast_client
from tests.schema_strategy import from_schema
from tests.spec_schema import spec_schema
from tests.test_transport import _reachable_text

pytestmark = pytest.mark.anyio

#: The fields a listed run leaves to its first read (when an object or array was sent).
LATE = (
    "required_action",
    "last_error",
    "incomplete_details",
    "tools",
    "usage",
    "truncation_strategy",
    "response_format",
    "tool_choice",
)


def _page(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False}


def _pending(run: Run, name: str) -> bool:
    """Whether ``run.<name>`` has not been typed yet (its slot still holds the JSON sent)."""
    descriptor = Run.__dict__[name]
    if not isinstance(descriptor, _Late):
        return False
    return descriptor.slot.__get__(run, Run).__class__ in (dict, list)


def _same_run(late: Run, eager: Run, d: dict[str, Any]) -> None:
    """Everything a caller can do with a run gives the same result for both."""
    assert late == eager
    assert hash(late) == hash(eager)
    assert repr(late) == repr(eager)
    for field in attrs.fields(Run):
        assert getattr(late, field.name) == getattr(eager, field.name), field.name
    assert unstructure(late) == d
    assert unstructure(late, copy=False) == d


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(from_schema(spec_schema("RunObject")))
def test_a_listed_run_is_the_run_structure_builds(d: dict[str, Any]) -> None:
    late, eager = structure_run(copy.deepcopy(d)), structure_run_eager(copy.deepcopy(d))
    # Before any read: the round trip, copies and pickling see the whole run.
    assert unstructure(late) == d
    clone = pickle.loads(pickle.dumps(structure_run(copy.deepcopy(d))))  # noqa: S301 - ours
    assert clone == eager
    assert copy.copy(structure_run(copy.deepcopy(d))) == eager
    assert copy.deepcopy(structure_run(copy.deepcopy(d))) == eager
    _same_run(late, eager, d)
    evolved = attrs.evolve(structure_run(copy.deepcopy(d)), id="run_other")
    assert evolved == attrs.evolve(eager, id="run_other")
    assert unstructure(evolved) == {**d, "id": "run_other"}


def test_nested_objects_are_typed_once_on_first_read() -> None:
    [d] = [r for r in make_runs("thread_1", 40, seed=3) if r.get("usage") and r.get("tools")][:1]
    run = structure_run(d)
    assert all(_pending(run, name) for name in ("tools", "usage"))
    assert Run.usage is Run.__dict__["usage"]  # on the class: the descriptor itself
    assert run.status == d["status"]  # a field of the run itself: typed already
    tools = run.tools
    assert tools is not None
    assert isinstance(tools[0], (aiorunlist.CodeInterpreterTool, aiorunlist.FileSearchTool))
    assert run.tools is tools  # typed once, then kept
    assert not _pending(run, "tools")
    assert _pending(run, "usage")
    assert run.usage == aiorunlist.Usage(**d["usage"])


def test_unstructure_of_a_listed_run_is_a_copy() -> None:
    d = {"id": "run_1", "metadata": {"k": "v"}, "tools": [{"type": "function", "x": [1]}]}
    run = structure_run(copy.deepcopy(d))
    out = unstructure(run)
    out["metadata"]["k"] = "changed"
    out["tools"][0]["x"].append(2)
    shared = unstructure(run, copy=False)
    shared["id"] = "changed"  # the top level is the caller's even without copies
    assert unstructure(run) == d
    assert run.metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("usage", {"prompt_tokens": API_KEY}, ["usage", "prompt_tokens"]),
        (
            "tools",
            [{"type": "code_interpreter"}, {"type": "function", "function": {"name": 5}}],
            ["tools", 1, "function", "name"],
        ),
        ("tool_choice", {"type": "function", "function": API_KEY}, ["tool_choice", "function"]),
        ("last_error", {"code": 7, "message": "m"}, ["last_error", "code"]),
    ],
)
async def test_a_wrong_type_inside_a_nested_object_is_raised_when_it_is_read(
    field: str, value: Any, path: list[str | int]
) -> None:
    bad = {"id": "run_2", "status": "completed", field: value}
    good = {"id": "run_1", "status": "failed"}

    def handler(request: Any) -> MockResponse:
        return MockResponse(200, body=_page([good, bad]))

    async with fast_client(SOCKETLESS_URL, transport=MockTransport(handler)) as client:
        async with client.runs_many(["thread_1"]) as stream:
            runs = [r async for r in stream]  # delivered: the run's own fields are right
        assert stream.threads_done == 1
        assert stream.failures == {}
        page = await client.list_page("thread_1")
    assert [r.id for r in runs] == ["run_1", "run_2"]
    for run in (runs[1], page.data[1]):
        assert run.status == "completed"
        for _ in range(2):  # every read raises: nothing half-typed is kept
            with pytest.raises(StructureError) as info:
                getattr(run, field)
            error = info.value
            assert isinstance(error, aiorunlist.APIResponseValidationError)
            assert isinstance(error, aiorunlist.RunListError)
            assert isinstance(error, (TypeError, ValueError))
            assert error.path == path
            assert str(error).startswith(error.location + ": expected ")
            assert "first read" in str(error)
            assert error.retryable is False
            # What every RunListError has: the answer was a 200, the run knows no more.
            assert error.status_code == 200
            assert (error.thread_id, error.request_id, error.not_retried) == (None, None, None)
            assert error.message == str(error)
            # The value is server text: the error quotes only its type.
            assert all(API_KEY not in text for text in _reachable_text(error))
            assert error.__cause__ is None
            assert error.__context__ is None
        assert unstructure(run) == bad  # what was sent, still exactly
    with pytest.raises(StructureError, match="expected") as eager:
        structure(bad, Run)  # structure() types everything at once
    assert eager.value.path == path


async def test_a_wrong_type_for_the_field_itself_still_fails_the_listing() -> None:
    sent = [{"id": "run_1", "tools": {"type": "function"}}]

    async with fast_client(
        SOCKETLESS_URL, transport=MockTransport(lambda r: MockResponse(200, body=_page(sent)))
    ) as client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="tools: expected"):
            async with client.runs_many(["thread_1"]) as stream:
                [r async for r in stream]


def test_a_run_built_by_hand_or_by_structure_has_no_late_fields() -> None:
    [d] = make_runs("thread_1", 1, seed=1)
    for run in (structure(d, Run), Run(id="run_1"), structure_run_eager(d)):
        assert not any(_pending(run, name) for name in LATE)
    by_hand = Run(response_format={"type": "text"})  # type: ignore[arg-type]
    kept: object = by_hand.response_format
    assert kept == {"type": "text"}  # a caller's dict stays a dict
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Run(id="run_1").nope  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        structure_run(d).nope  # type: ignore[attr-defined]  # noqa: B018


async def test_pages_many_types_each_page_whole_and_fails_the_thread() -> None:
    """Exporters read nested objects while they write: a bad one fails its thread first."""
    bad: dict[str, Any] = {"id": "run_2", "status": "completed", "usage": {"total_tokens": "x"}}
    good: dict[str, Any] = {
        "id": "run_1",
        "status": "failed",
        "tools": [{"type": "code_interpreter"}],
    }

    def handler(request: Any) -> MockResponse:
        page = [good, bad] if "thread_bad" in request.url else [good]
        return MockResponse(200, body=_page(page))

    async with (
        fast_client(SOCKETLESS_URL, transport=MockTransport(handler)) as client,
        client.pages_many(["thread_ok", "thread_bad"], on_error="collect") as pages,
    ):
        items = [p async for p in pages]
    [ok] = [p for p in items if p.thread_id == "thread_ok"]
    assert not any(_pending(run, name) for run in ok.runs for name in LATE)
    assert ok.runs[0].tools == (aiorunlist.CodeInterpreterTool(),)
    error = pages.failures["thread_bad"]
    assert isinstance(error, aiorunlist.APIResponseValidationError)
    assert "usage.total_tokens: expected a number" in str(error)


def test_the_hooks_store_each_field_in_its_slot_past_the_descriptors() -> None:
    """The hooks' builders write a listed run's fields as plain slot stores, not through the
    descriptors that type nested objects on first read (a call per field on the hot path)."""
    for hook in (structure_run, structure_run_eager):
        builder = hook.__globals__["Builder"]
        for field in attrs.fields(Run):
            store = builder.__dict__[field.name]
            assert type(store) is types.MemberDescriptorType, field.name
    assert all(isinstance(Run.__dict__[name], _Late) for name in LATE)
