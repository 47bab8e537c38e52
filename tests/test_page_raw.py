"""ThreadPage.raw and ThreadPage.runs share nothing: editing one changes neither the other nor
what unstructure gives for a run."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import aiorunlist
from aiorunlist import ThreadPage, unstructure
from aiorunlist.testing import MockResponse, MockTransport, make_runs
from tests.conftest import SOCKETLESS_URL, fast_client
from tests.schema_strategy import from_schema
from tests.spec_schema import spec_schema

pytestmark = pytest.mark.anyio


def _sent() -> dict[str, Any]:
    """A run whose JSON a run keeps as it is: metadata, tool_resources, an unknown key, a
    function's schema, a tool and a response format of a type the library does not know."""
    [d] = make_runs("thread_1", 1, seed=7)
    d = copy.deepcopy(d)
    d["metadata"] = {"team": "a", "tags": ["x"]}
    d["tool_resources"] = {"file_search": {"vector_store_ids": ["vs_1"]}}
    d["zz_unknown"] = {"b": 1, "a": [2]}
    d["tools"] = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
        {"type": "a_new_tool", "config": {"depth": 1}},
    ]
    d["response_format"] = {"type": "a_new_format", "spec": {"k": "v"}}
    d["usage"] = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "extra": {}}
    return d


async def _page(sent: list[dict[str, Any]]) -> ThreadPage:
    body = json.dumps({"object": "list", "data": sent, "has_more": False})
    async with (
        fast_client(
            SOCKETLESS_URL, transport=MockTransport(lambda r: MockResponse(200, body=body))
        ) as client,
        client.pages_many(["thread_1"]) as pages,
    ):
        [page] = [p async for p in pages]
    return page


def _edit_everything(value: Any) -> None:
    """Change every dict and list inside ``value`` in place."""
    if isinstance(value, dict):
        for v in list(value.values()):
            _edit_everything(v)
        value["edited"] = True
    elif isinstance(value, list):
        for v in value:
            _edit_everything(v)
        value.append("edited")


async def test_editing_raw_changes_no_run() -> None:
    sent = _sent()
    page = await _page([sent])
    run = page.runs[0]
    before = unstructure(run)
    assert before == sent
    assert page.raw == [sent]
    assert list(page.raw[0]) == list(sent)  # the server's key order
    _edit_everything(page.raw[0])
    assert page.raw[0]["metadata"]["edited"] is True  # the edits stay in raw (it is yours)
    assert unstructure(run) == before == sent
    assert run.metadata == {"team": "a", "tags": ["x"]}
    assert run.unknown_fields == {"zz_unknown": {"b": 1, "a": [2]}}
    assert aiorunlist.structure(sent, aiorunlist.Run) == run


async def test_editing_a_run_changes_no_raw() -> None:
    sent = _sent()
    page = await _page([sent])
    run = page.runs[0]
    assert page.raw == [sent]  # read (and so copied) before the run is edited
    # A run's JSON is documented read-only; editing it anyway leaves raw as sent.
    assert run.metadata is not None
    assert run.tool_resources is not None
    assert run.tools is not None
    _edit_everything(run.metadata)
    _edit_everything(run.tool_resources)
    for tool in run.tools:
        if isinstance(tool, aiorunlist.UnknownTool):
            _edit_everything(tool.payload)
    _edit_everything(run.unknown_fields["zz_unknown"])
    assert page.raw == [sent]
    assert unstructure(run) != sent


async def test_raw_is_copied_once_and_keeps_wide_integers() -> None:
    sent = _sent()
    sent["metadata"]["n"] = 2**70  # orjson will not write it: copied exactly all the same
    page = await _page([sent])
    assert page.raw is page.raw
    assert page.raw == [sent]
    assert page.raw[0]["metadata"]["n"] == 2**70


def test_raw_given_to_the_constructor_is_copied_on_read() -> None:
    given_raw = [{"id": "run_1", "metadata": {"k": ["v"]}}]
    run = aiorunlist.Run(id="run_1", metadata=given_raw[0]["metadata"])  # type: ignore[arg-type]
    page = ThreadPage("thread_1", (run,), True, None, given_raw)
    assert page == ThreadPage("thread_1", (run,), True, raw=copy.deepcopy(given_raw))
    assert page.raw == given_raw
    page.raw[0]["metadata"]["k"].append("w")
    assert given_raw == [{"id": "run_1", "metadata": {"k": ["v"]}}]
    assert ThreadPage("thread_1", (), True).raw == ()


async def test_raw_shared_with_no_run_is_not_copied() -> None:
    # Pages of raw runs only (what the sinks export) have no runs to share with.
    items = [{"id": "run_1"}]
    page = ThreadPage("thread_1", (), True, raw=items)
    assert page.raw is items


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(from_schema(spec_schema("RunObject")))
def test_raw_and_runs_share_no_container(d: dict[str, Any]) -> None:
    from aiorunlist._convert import structure_run_eager

    run = structure_run_eager(d)  # as pages_many types a page: sharing d's containers
    page = ThreadPage("thread_1", (run,), True, raw=[d])

    def containers(value: Any) -> set[int]:
        found: set[int] = set()
        todo = [value]
        while todo:
            v = todo.pop()
            if isinstance(v, dict):
                found.add(id(v))
                todo += v.values()
            elif isinstance(v, list):
                found.add(id(v))
                todo += v
        return found

    assert not containers(list(page.raw)) & containers(unstructure(run, copy=False))
    assert page.raw == [d]
