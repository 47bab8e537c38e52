"""The shipped fake server (``aiorunlist.testing``), driven by a plain ``aiohttp.ClientSession``.

Every 200 body is validated against the spec's ``ListRunsResponse`` and every JSON error body
against ``ErrorResponse``. One deviation: the real service answers an empty page with
``first_id``/``last_id`` null, while the spec types them as plain strings, so empty pages are
checked against a copy of the schema where both must be null.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy

from aiorunlist._protocol import parse_go_duration
from aiorunlist.testing import (
    BASE_CREATED_AT,
    FakeServer,
    Fault,
    RateLimit,
    RecordedRequest,
    make_id,
    make_run,
    make_runs,
)
from aiorunlist.testing._server import go_duration
from tests.spec_schema import spec_examples, spec_schema

pytestmark = pytest.mark.anyio

KEY = "sk-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")

RUN_VALIDATOR = jsonschema.Draft202012Validator(spec_schema("RunObject"))
LIST_VALIDATOR = jsonschema.Draft202012Validator(spec_schema("ListRunsResponse"))
ERROR_VALIDATOR = jsonschema.Draft202012Validator(spec_schema("ErrorResponse"))


def _empty_list_schema() -> dict[str, Any]:
    schema: dict[str, Any] = copy.deepcopy(spec_schema("ListRunsResponse"))
    schema["properties"]["first_id"] = {"type": "null"}
    schema["properties"]["last_id"] = {"type": "null"}
    schema["properties"]["data"]["maxItems"] = 0
    return schema


EMPTY_LIST_VALIDATOR = jsonschema.Draft202012Validator(_empty_list_schema())


@attrs.frozen
class Reply:
    """One HTTP answer as the client saw it."""

    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def ids(self) -> list[str]:
        return [run["id"] for run in self.body["data"]]

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


def check_reply(reply: Reply, *, page_ids: bool = True, request_id: bool = True) -> None:
    """Assert the answer is a well-formed page or error of the spec."""
    assert reply.headers["Content-Type"] == "application/json"
    if request_id:
        assert REQUEST_ID.fullmatch(reply.headers["x-request-id"])
    else:
        assert "x-request-id" not in reply.headers
    body = reply.body
    if reply.status != 200:
        ERROR_VALIDATOR.validate(body)
        assert body["error"]["message"]
        return
    assert body["object"] == "list"
    if not page_ids:
        assert "first_id" not in body
        assert "last_id" not in body
        return
    (LIST_VALIDATOR if body["data"] else EMPTY_LIST_VALIDATOR).validate(body)
    ids = [run["id"] for run in body["data"]]
    assert body["first_id"] == (ids[0] if ids else None)
    assert body["last_id"] == (ids[-1] if ids else None)
    assert list(body) == ["object", "data", "first_id", "last_id", "has_more"]


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    query: Mapping[str, str | int | None] | None = None,
    *,
    check: bool = True,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    **params: str | int | None,
) -> Reply:
    """Send one request with the ``query`` and ``params`` parameters (``None`` values left out);
    with ``check``, validate the answer against the spec."""
    merged = {**(query or {}), **params}
    sent = {key: str(value) for key, value in merged.items() if value is not None}
    async with http.request(method, url, params=sent, headers=headers) as response:
        reply = Reply(response.status, response.headers, await response.read())
    if check:
        check_reply(reply)
    return reply


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


def linear_runs(thread_id: str, count: int) -> list[dict[str, Any]]:
    """``count`` runs created one minute apart, oldest first."""
    return [make_run(thread_id, i, created_at=BASE_CREATED_AT + 60 * i) for i in range(count)]


# --- run factories -----------------------------------------------------------------------------


def test_make_run_follows_the_spec_and_covers_the_variety() -> None:
    runs = [make_run(f"thread_{t}", i) for t in range(8) for i in range(40)]
    for run in runs:
        RUN_VALIDATOR.validate(run)
        assert run["id"].startswith("run_")
        assert "tool_resources" in run
    assert len({run["id"] for run in runs}) == len(runs)
    statuses = {run["status"] for run in runs}
    assert statuses == {
        "queued",
        "in_progress",
        "requires_action",
        "cancelling",
        "cancelled",
        "failed",
        "completed",
        "incomplete",
        "expired",
    }
    tool_kinds = {tool["type"] for run in runs for tool in run["tools"]}
    assert tool_kinds == {"code_interpreter", "file_search", "function"}
    assert any("reasoning_effort" in run for run in runs)
    assert any("reasoning_effort" not in run for run in runs)
    for run in runs:
        status = run["status"]
        assert (run["last_error"] is not None) == (status == "failed")
        assert (run["incomplete_details"] is not None) == (status == "incomplete")
        assert (run["required_action"] is not None) == (status == "requires_action")
        if status == "requires_action":
            calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
            names = {
                tool["function"]["name"] for tool in run["tools"] if tool["type"] == "function"
            }
            assert calls
            assert {call["function"]["name"] for call in calls} <= names
        if status == "completed":
            assert run["completed_at"] is not None
            assert run["usage"] is not None
        if status in ("queued", "in_progress", "requires_action", "cancelling"):
            assert run["usage"] is None
            assert run["expires_at"] is not None


def test_make_run_is_deterministic() -> None:
    assert make_run("thread_a", 3) == make_run("thread_a", 3)
    assert make_run("thread_a", 3)["id"] != make_run("thread_b", 3)["id"]
    first = make_run("thread_a", 0, rng=random.Random(5))
    assert first == make_run("thread_a", 0, rng=random.Random(5))
    assert make_run("t", 0, created_at=7)["created_at"] == 7
    assert make_run("t", 0, status="failed")["last_error"] is not None
    with pytest.raises(ValueError, match="unknown run status"):
        make_run("t", 0, status="sleeping")


def test_make_runs_are_in_creation_order() -> None:
    runs = make_runs("thread_x", 50, seed=1)
    stamps = [run["created_at"] for run in runs]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 50
    assert make_runs("thread_x", 50, seed=1) == runs
    assert make_runs("thread_x", 3) == [make_run("thread_x", i) for i in range(3)]
    tied = make_runs("thread_x", 4, start=10, created_at=lambda i: 100)
    assert [run["created_at"] for run in tied] == [100] * 4
    assert tied[0]["id"] == make_id("run_", "thread_x", 10)


# --- the spec helper ---------------------------------------------------------------------------


def test_spec_schema_is_standalone_json_schema() -> None:
    schema = spec_schema("RunObject")
    jsonschema.Draft202012Validator.check_schema(schema)
    text = orjson.dumps(schema).decode()
    assert "#/components/" not in text
    assert '"nullable"' not in text
    assert {"RunObject", "ListRunsResponse", "ErrorResponse", "TruncationObject"} <= set(
        schema["$defs"]
    )
    run = make_run("thread_s", 0, status="completed")
    for key in ("expires_at", "required_action", "truncation_strategy", "response_format"):
        assert RUN_VALIDATOR.is_valid({**run, key: None}), key
    assert not RUN_VALIDATOR.is_valid({**run, "expires_at": "soon"})
    assert not RUN_VALIDATOR.is_valid({**run, "truncation_strategy": {"type": "sometimes"}})
    with pytest.raises(KeyError, match="NoSuchThing"):
        spec_schema("NoSuchThing")


async def test_spec_example_is_served_exactly(
    fake: FakeServer, http: aiohttp.ClientSession
) -> None:
    (example,) = spec_examples()
    # The example lists the newest run first; threads take runs oldest first.
    fake.add_thread("thread_abc123", reversed(example["data"]))
    # No schema check: the spec's own example has "instructions": null and no
    # "required_action", which its RunObject schema does not allow.
    reply = await fetch(http, fake.url_for("thread_abc123"), check=False)
    assert reply.status == 200
    assert reply.body == example
    assert reply.body["data"][0]["tool_resources"]["code_interpreter"]["file_ids"]


# --- paging ------------------------------------------------------------------------------------


async def test_default_page_is_20_newest_first(
    fake: FakeServer, http: aiohttp.ClientSession
) -> None:
    (tid,) = fake.seed(1, 45)
    reply = await fetch(http, fake.url_for(tid))
    assert reply.status == 200
    assert reply.ids == fake.expected_ids(tid)[:20]
    assert reply.body["has_more"] is True
    assert (
        reply.body["data"]
        == sorted(fake.threads[tid], key=lambda run: run["created_at"], reverse=True)[:20]
    )


async def test_pages_in_both_orders(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t", linear_runs("t", 10))
    asc = fake.expected_ids("t", "asc")
    desc = fake.expected_ids("t", "desc")
    assert desc == asc[::-1]
    assert asc == [run["id"] for run in fake.threads["t"]]
    url = fake.url_for("t")

    async def page(**params: str | int) -> tuple[list[str], bool]:
        reply = await fetch(http, url, params)
        assert reply.status == 200
        return reply.ids, reply.body["has_more"]

    assert await page(order="asc", limit=4) == (asc[:4], True)
    assert await page(order="asc", limit=10) == (asc, False)
    assert await page(order="asc", limit=11) == (asc, False)
    assert await page(order="desc", limit=3) == (desc[:3], True)
    # after: what follows the cursor in list order
    assert await page(order="asc", limit=3, after=asc[2]) == (asc[3:6], True)
    assert await page(order="asc", limit=3, after=asc[6]) == (asc[7:], False)
    assert await page(order="asc", limit=3, after=asc[9]) == ([], False)
    assert await page(order="desc", limit=4, after=desc[1]) == (desc[2:6], True)
    # before: the `limit` items nearest to the cursor, still in list order
    assert await page(order="asc", limit=3, before=asc[7]) == (asc[4:7], True)
    assert await page(order="asc", limit=3, before=asc[3]) == (asc[0:3], False)
    assert await page(order="asc", limit=5, before=asc[2]) == (asc[0:2], False)
    assert await page(order="asc", limit=5, before=asc[0]) == ([], False)
    assert await page(order="desc", limit=2, before=desc[5]) == (desc[3:5], True)
    # both: strictly between, the first `limit` of them
    assert await page(order="asc", limit=3, after=asc[1], before=asc[8]) == (asc[2:5], True)
    assert await page(order="asc", limit=6, after=asc[1], before=asc[8]) == (asc[2:8], False)
    assert await page(order="asc", limit=3, after=asc[5], before=asc[5]) == ([], False)
    assert await page(order="asc", limit=3, after=asc[7], before=asc[2]) == ([], False)
    assert await page(order="desc", limit=2, after=desc[0], before=desc[9]) == (desc[1:3], True)
    # the largest allowed limit, and unknown parameters are ignored
    assert await page(order="asc", limit=100, include="step_details") == (asc, False)


async def test_empty_and_unknown_threads(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("thread_empty")
    reply = await fetch(http, fake.url_for("thread_empty"))
    assert reply.body == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    reply = await fetch(http, fake.url_for("thread_nope"))
    assert reply.status == 404
    assert reply.error == {
        "message": "No thread found with id 'thread_nope'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_ties_keep_insertion_order(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    runs = [make_run("t", i, created_at=[5, 3, 5, 3, 4][i]) for i in range(5)]
    fake.add_thread("t", runs)
    ids = [run["id"] for run in runs]
    expected_asc = [ids[1], ids[3], ids[4], ids[0], ids[2]]
    assert fake.expected_ids("t", "asc") == expected_asc
    assert fake.expected_ids("t", "desc") == expected_asc[::-1]
    assert (await fetch(http, fake.url_for("t"), order="asc")).ids == expected_asc
    assert (await fetch(http, fake.url_for("t"))).ids == expected_asc[::-1]


async def test_encoded_thread_ids(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("a/b c")
    reply = await fetch(http, fake.base_url + "/threads/a%2Fb%20c/runs")
    assert reply.status == 200
    assert fake.requests[-1].thread_id == "a/b c"
    assert fake.requests[-1].path == "/v1/threads/a%2Fb%20c/runs"


@st.composite
def thread_shapes(draw: st.DrawFn) -> tuple[list[int], int, str]:
    stamps = draw(st.lists(st.integers(0, 6), max_size=30))
    limit = draw(st.integers(1, 10))
    order = draw(st.sampled_from(["asc", "desc"]))
    return stamps, limit, order


_thread_numbers = itertools.count()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(shape=thread_shapes())
async def test_walks_visit_every_run_once(
    fake: FakeServer, http: aiohttp.ClientSession, shape: tuple[list[int], int, str]
) -> None:
    stamps, limit, order = shape
    tid = f"thread_walk_{next(_thread_numbers)}"
    fake.add_thread(tid, [make_run(tid, i, created_at=c) for i, c in enumerate(stamps)])
    expected = fake.expected_ids(tid, order)
    url = fake.url_for(tid)

    # Forward: after=last_id from the start until has_more is false.
    seen: list[str] = []
    after: str | None = None
    last: Reply | None = None
    while True:
        last = await fetch(http, url, limit=limit, order=order, after=after)
        assert last.status == 200
        page = last.ids
        assert len(page) <= limit
        seen += page
        if not last.body["has_more"]:
            break
        assert len(page) == limit
        after = last.body["last_id"]
    assert seen == expected

    # Backward: from the last page, before=first_id until has_more is false.
    back = list(last.ids)
    before = last.body["first_id"]
    while before is not None:
        reply = await fetch(http, url, limit=limit, order=order, before=before)
        back = reply.ids + back
        if not reply.body["has_more"]:
            break
        assert len(reply.ids) == limit
        before = reply.body["first_id"]
    assert back == expected


# --- validation, auth, headers, routes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"limit": "0"}, "limit", "integer_below_min_value"),
        ({"limit": "-3"}, "limit", "integer_below_min_value"),
        ({"limit": "101"}, "limit", "integer_above_max_value"),
        ({"limit": "ten"}, "limit", "invalid_type"),
        ({"limit": "1.5"}, "limit", "invalid_type"),
        ({"limit": ""}, "limit", "invalid_type"),
        ({"order": "up"}, "order", "invalid_value"),
        ({"order": "ASC"}, "order", "invalid_value"),
        ({"after": "run_nope"}, "after", None),
        ({"before": "run_nope"}, "before", None),
        ({"after": ""}, "after", None),
    ],
)
async def test_invalid_parameters(
    fake: FakeServer,
    http: aiohttp.ClientSession,
    params: dict[str, str],
    param: str,
    code: str | None,
) -> None:
    fake.add_thread("t", linear_runs("t", 3))
    reply = await fetch(http, fake.url_for("t"), params)
    assert reply.status == 400
    assert reply.error["param"] == param
    assert reply.error["code"] == code
    assert reply.error["type"] == "invalid_request_error"
    assert param in reply.error["message"] or params[param] in reply.error["message"]


async def test_max_limit_is_configurable(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY, max_limit=5) as fake:
        fake.add_thread("t", linear_runs("t", 30))
        assert len((await fetch(http, fake.url_for("t"))).ids) == 5  # default limit capped
        assert len((await fetch(http, fake.url_for("t"), limit=5)).ids) == 5
        reply = await fetch(http, fake.url_for("t"), limit=6)
        assert reply.status == 400
        assert "<= 5" in reply.error["message"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic c2stdGVzdC1rZXk=", "sk-test-key", "Bearer sk-other"],
)
async def test_bad_credentials_get_401(fake: FakeServer, authorization: str | None) -> None:
    fake.add_thread("t")
    headers = {"OpenAI-Beta": "assistants=v2"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with aiohttp.ClientSession(headers=headers) as http:
        reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 401
    assert reply.error["code"] == "invalid_api_key"
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["param"] is None
    assert KEY not in reply.error["message"]


async def test_auth_scheme_is_case_insensitive(fake: FakeServer) -> None:
    fake.add_thread("t")
    headers = {"Authorization": f"bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession(headers=headers) as http:
        assert (await fetch(http, fake.url_for("t"))).status == 200


async def test_any_key_when_api_key_is_none() -> None:
    async with FakeServer(api_key=None) as fake:
        fake.add_thread("t")
        headers = {"Authorization": "Bearer whatever", "OpenAI-Beta": "assistants=v2"}
        async with aiohttp.ClientSession(headers=headers) as http:
            assert (await fetch(http, fake.url_for("t"))).status == 200
            reply = await fetch(http, fake.url_for("t"), headers={"Authorization": "Bearer "})
            assert reply.status == 401


@pytest.mark.parametrize(
    ("beta", "status", "message"),
    [
        (None, 400, "must provide the 'OpenAI-Beta' header"),
        ("assistants=v1", 400, "v1 Assistants API has been deprecated"),
        ("something=else", 400, "OpenAI-Beta: assistants=v2"),
        ("other=1, assistants=v2", 200, None),
    ],
)
async def test_beta_header(
    fake: FakeServer, beta: str | None, status: int, message: str | None
) -> None:
    fake.add_thread("t")
    headers = {"Authorization": f"Bearer {KEY}"}
    if beta is not None:
        headers["OpenAI-Beta"] = beta
    async with aiohttp.ClientSession(headers=headers) as http:
        reply = await fetch(http, fake.url_for("t"))
    assert reply.status == status
    if message is not None:
        assert message in reply.error["message"]
        assert reply.error["param"] is None


async def test_beta_header_can_be_optional() -> None:
    async with (
        FakeServer(api_key=KEY, require_beta_header=False) as fake,
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        fake.add_thread("t")
        assert (await fetch(http, fake.url_for("t"))).status == 200


async def test_auth_is_checked_first(fake: FakeServer) -> None:
    async with aiohttp.ClientSession() as http:
        reply = await fetch(http, fake.url_for("thread_unknown"), limit=0)
    assert reply.status == 401


async def test_other_routes(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    reply = await fetch(http, fake.base_url + "/threads/t")
    assert reply.status == 404
    assert reply.error["message"] == "Invalid URL (GET /v1/threads/t)"
    reply = await fetch(http, fake.url_for("t"), method="POST")
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET"
    assert [(r.method, r.thread_id) for r in fake.requests] == [("GET", None), ("POST", "t")]


async def test_page_ids_and_request_id_can_be_left_out(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY, send_page_ids=False, send_request_id=False) as fake:
        fake.add_thread("t", linear_runs("t", 3))
        reply = await fetch(http, fake.url_for("t"), check=False)
        check_reply(reply, page_ids=False, request_id=False)
        assert reply.body == {
            "object": "list",
            "data": fake.threads["t"][::-1],
            "has_more": False,
        }
        error = await fetch(http, fake.url_for("nope"), check=False)
        check_reply(error, request_id=False)
        assert fake.requests[0].request_id is None


async def test_force_page_size_ignores_limit(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY, force_page_size=7) as fake:
        fake.add_thread("t", linear_runs("t", 10))
        asc = fake.expected_ids("t", "asc")
        for limit in (None, 2, 100, 5000, "x"):
            reply = await fetch(http, fake.url_for("t"), order="asc", limit=limit)
            assert reply.ids == asc[:7]
            assert reply.body["has_more"] is True
        reply = await fetch(http, fake.url_for("t"), order="asc", limit=2, after=asc[6])
        assert reply.ids == asc[7:]


# --- faults ------------------------------------------------------------------------------------


async def test_status_fault_with_headers(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    fake.add_fault(Fault(status=429, headers={"retry-after-ms": "10"}))
    fake.add_fault(Fault(status=500, headers={"x-should-retry": "false"}))
    fake.add_fault(Fault(status=503))
    reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 429
    assert reply.headers["retry-after-ms"] == "10"
    assert reply.error["code"] == "rate_limit_exceeded"
    assert reply.error["type"] == "requests"
    reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 500
    assert reply.headers["x-should-retry"] == "false"
    assert reply.error["type"] == "server_error"
    assert reply.error["code"] is None
    reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 503
    assert (await fetch(http, fake.url_for("t"))).status == 200
    assert [r.status for r in fake.requests] == [429, 500, 503, 200]
    assert [r.fault.kind if r.fault else None for r in fake.requests] == [
        "status",
        "status",
        "status",
        None,
    ]


async def test_error_code_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_fault(Fault(status=429, error_code="insufficient_quota"))
    fake.add_fault(Fault(status=400, error_code="thread_locked"))
    reply = await fetch(http, fake.url_for("any"))
    assert reply.status == 429
    assert reply.error["code"] == "insufficient_quota"
    assert reply.error["type"] == "insufficient_quota"
    assert "quota" in reply.error["message"]
    reply = await fetch(http, fake.url_for("any"))
    assert reply.status == 400
    assert reply.error["code"] == "thread_locked"


async def test_body_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    fake.add_fault(Fault(body=b'{"object": "list", "data": ['))
    fake.add_fault(
        Fault(status=502, body=b"upstream said no", headers={"content-type": "text/plain"})
    )
    reply = await fetch(http, fake.url_for("t"), check=False)
    assert (reply.status, reply.raw) == (200, b'{"object": "list", "data": [')
    assert reply.headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        _ = reply.body
    reply = await fetch(http, fake.url_for("t"), check=False)
    assert (reply.status, reply.raw) == (502, b"upstream said no")
    assert reply.headers["Content-Type"] == "text/plain"


async def test_not_json_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    fake.add_fault(Fault(not_json=True))
    fake.add_fault(Fault(not_json=True, status=502))
    reply = await fetch(http, fake.url_for("t"), check=False)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.raw.startswith(b"<!DOCTYPE html>")
    reply = await fetch(http, fake.url_for("t"), check=False)
    assert reply.status == 502
    assert b"502 Bad Gateway" in reply.raw
    assert REQUEST_ID.fullmatch(reply.headers["x-request-id"])


async def test_delay_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t", linear_runs("t", 2))
    fake.add_fault(Fault(delay=0.2))
    fake.add_fault(Fault(delay=0.1, status=503))
    started = time.monotonic()
    reply = await fetch(http, fake.url_for("t"))
    assert time.monotonic() - started >= 0.19
    assert reply.status == 200
    assert len(reply.ids) == 2
    started = time.monotonic()
    assert (await fetch(http, fake.url_for("t"))).status == 503
    assert time.monotonic() - started >= 0.09


async def test_truncate_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t", linear_runs("t", 5))
    fake.add_fault(Fault(truncate=True, headers={"x-extra": "1"}))
    async with http.get(fake.url_for("t")) as response:
        assert response.status == 200
        assert response.headers["x-extra"] == "1"
        length = int(response.headers["Content-Length"])
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    reply = await fetch(http, fake.url_for("t"))
    assert len(reply.raw) == length
    assert [r.status for r in fake.requests] == [200, 200]
    assert fake.requests[0].fault == Fault(truncate=True, headers={"x-extra": "1"})


async def test_truncate_keeps_the_error_status(
    fake: FakeServer, http: aiohttp.ClientSession
) -> None:
    fake.add_fault(Fault(truncate=True))
    async with http.get(fake.url_for("unknown")) as response:
        assert response.status == 404
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_drop_fault(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    # aiohttp's ClientSession silently retries an idempotent request once when the server
    # disconnects, so one drop goes unnoticed and two reach the caller.
    fake.add_fault(Fault(drop=True))
    assert (await fetch(http, fake.url_for("t"))).status == 200
    assert [r.status for r in fake.requests] == [0, 200]
    fake.reset_stats()
    fake.add_fault(Fault(drop=True, times=2))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(http, fake.url_for("t"))
    assert [r.status for r in fake.requests] == [0, 0]
    assert (await fetch(http, fake.url_for("t"))).status == 200


async def test_requests_record_when_they_arrived_and_were_answered(
    fake: FakeServer, http: aiohttp.ClientSession
) -> None:
    fake.add_thread("t")
    fake.add_fault(Fault(status=429, delay=0.05, headers={"retry-after-ms": "500"}))
    fake.add_fault(Fault(drop=True, times=2))
    sent = time.monotonic()
    assert (await fetch(http, fake.url_for("t"))).status == 429
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(http, fake.url_for("t"))
    throttled, *dropped = fake.requests
    assert sent <= throttled.received_at
    assert throttled.answered_at is not None
    assert throttled.answered_at - throttled.received_at >= 0.05  # the answer's delay
    assert [r.answered_at for r in dropped] == [None, None]  # nothing was answered


async def test_fault_matching_by_thread_and_times(
    fake: FakeServer, http: aiohttp.ClientSession
) -> None:
    fake.add_thread("a")
    fake.add_thread("b")
    fake.add_fault(Fault(status=500, thread_id="a", times=2))
    fake.add_fault(Fault(status=502, times=1))
    assert fake.pending_faults == [
        Fault(status=500, thread_id="a", times=2),
        Fault(status=502),
    ]
    statuses = []
    for thread in ("b", "a", "b", "a", "a", "b"):
        statuses.append((await fetch(http, fake.url_for(thread))).status)
    assert statuses == [502, 500, 200, 500, 200, 200]
    assert fake.pending_faults == []
    fake.add_fault(Fault(status=500, times=3))
    fake.clear_faults()
    assert (await fetch(http, fake.url_for("a"))).status == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"times": 0}, "times"),
        ({"delay": -1.0}, "delay"),
        ({"status": 700}, "status"),
        ({"drop": True, "truncate": True}, "drop / truncate"),
        ({"not_json": True, "body": b"x"}, "not_json / body"),
        ({"drop": True, "status": 500}, "no status"),
        ({"error_code": "x"}, "needs a status"),
    ],
)
def test_fault_rejects_nonsense(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)


def test_fault_headers_are_copied() -> None:
    headers = {"a": "1"}
    fault = Fault(status=500, headers=headers)
    headers["a"] = "2"
    assert fault.headers == {"a": "1"}
    assert hash(fault) == hash(Fault(status=500, headers={"b": "3"}))


# --- chaos -------------------------------------------------------------------------------------


async def chaos_run(fake: FakeServer, http: aiohttp.ClientSession, n: int) -> list[str]:
    """``n`` sequential requests; what each request the server saw got, as text."""
    fake.reset_stats()
    for _ in range(n):
        try:
            async with http.get(fake.url_for("t")) as response:
                await response.read()
        except aiohttp.ClientError:
            pass
    return [f"{r.status}:{r.fault.kind if r.fault else '-'}" for r in fake.requests]


async def test_chaos_is_seeded(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t", linear_runs("t", 3))
    fake.chaos(0.5, seed=7, slow_delay=0.001)
    first = await chaos_run(fake, http, 40)
    fake.chaos(0.5, seed=7, slow_delay=0.001)
    assert await chaos_run(fake, http, 40) == first
    fake.chaos(0.5, seed=8, slow_delay=0.001)
    assert await chaos_run(fake, http, 40) != first
    kinds = {outcome.split(":")[1] for outcome in first}
    assert kinds >= {"-", "status"}
    assert 8 <= sum(outcome.endswith(":-") for outcome in first) <= len(first) - 8
    fake.chaos(0)
    assert set(await chaos_run(fake, http, 10)) == {"200:-"}


async def test_chaos_kinds(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    fake.chaos(1.0, kinds=["429"], retry_after_ms=3)
    reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 429
    assert reply.headers["retry-after-ms"] == "3"
    fake.chaos(1.0, kinds=["502", "not_json"], seed=1)
    outcomes = await chaos_run(fake, http, 20)
    assert set(outcomes) == {"502:status", "200:not_json"}
    fake.add_fault(Fault(status=418))
    assert (await fetch(http, fake.url_for("t"))).status == 418  # queued faults come first
    with pytest.raises(ValueError, match="unknown chaos kind"):
        fake.chaos(0.5, kinds=["explode"])
    with pytest.raises(ValueError, match="rate"):
        fake.chaos(1.5)


# --- recording, concurrency, lifecycle ---------------------------------------------------------


async def test_requests_are_recorded(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t", linear_runs("t", 3))
    before = time.monotonic()
    reply = await fetch(http, fake.url_for("t"), limit=2, order="asc", extra="1")
    await fetch(http, fake.url_for("nope"))
    first, second = fake.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.thread_id) == ("GET", "/v1/threads/t/runs", "t")
    assert first.query == {"limit": "2", "order": "asc", "extra": "1"}
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["OPENAI-BETA"] == "assistants=v2"
    assert first.status == 200
    assert first.fault is None
    assert first.request_id == reply.headers["x-request-id"]
    assert before <= first.received_at <= second.received_at <= time.monotonic()
    assert second.status == 404
    fake.reset_stats()
    assert fake.requests == []
    assert fake.max_in_flight == 0


async def test_max_in_flight(fake: FakeServer, http: aiohttp.ClientSession) -> None:
    fake.add_thread("t")
    fake.add_fault(Fault(delay=0.2, times=5))
    started = time.monotonic()
    replies = await asyncio.gather(*(fetch(http, fake.url_for("t")) for _ in range(5)))
    assert time.monotonic() - started < 0.8
    assert [reply.status for reply in replies] == [200] * 5
    assert fake.max_in_flight == 5
    assert fake.in_flight == 0
    fake.reset_stats()
    await fetch(http, fake.url_for("t"))
    assert fake.max_in_flight == 1


async def test_close_with_a_pending_delayed_request(http: aiohttp.ClientSession) -> None:
    fake = FakeServer(api_key=KEY)
    await fake.start()
    fake.add_thread("t")
    fake.add_fault(Fault(delay=30))
    pending = asyncio.ensure_future(fetch(http, fake.url_for("t")))
    while fake.in_flight == 0:  # noqa: ASYNC110 - polling the server's counter, no event to wait on
        await asyncio.sleep(0.005)
    assert fake.requests[0].status == -1
    started = time.monotonic()
    await fake.close()
    assert time.monotonic() - started < 2
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert fake.requests[0].status == 0
    assert fake.in_flight == 0
    await fake.close()  # idempotent


async def test_lifecycle_errors() -> None:
    fake = FakeServer()
    with pytest.raises(RuntimeError, match="not been started"):
        _ = fake.base_url
    async with fake:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", fake.base_url)
        assert fake.port != 0
        with pytest.raises(RuntimeError, match="already running"):
            await fake.start()


async def test_handler_errors_become_500(
    fake: FakeServer, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_thread("t")
    fake.threads["t"].append({"id": "run_bad", "created_at": 1, "oops": object()})
    with caplog.at_level(logging.ERROR, logger="aiorunlist.testing"):
        reply = await fetch(http, fake.url_for("t"))
    assert reply.status == 500
    assert len(caplog.records) == 1
    fake.threads["t"].clear()
    assert (await fetch(http, fake.url_for("t"))).status == 200


# --- data management ---------------------------------------------------------------------------


async def test_seed_is_deterministic() -> None:
    one, two = FakeServer(), FakeServer()
    ids = one.seed(4, lambda position: 3 * position, seed=5)
    assert two.seed(4, lambda position: 3 * position, seed=5) == ids
    assert one.threads == two.threads
    assert [len(one.threads[tid]) for tid in ids] == [0, 3, 6, 9]
    assert all(tid.startswith("thread_") for tid in ids)
    assert FakeServer().seed(4, 2, seed=6, prefix="th_") != ids
    for tid in ids:
        for run in one.threads[tid]:
            RUN_VALIDATOR.validate(run)
            assert run["thread_id"] == tid
    with pytest.raises(ValueError, match="already exists"):
        one.seed(1, 1, seed=5)


def test_add_runs_checks_its_input() -> None:
    fake = FakeServer()
    fake.add_thread("t", [{"id": "run_1", "created_at": 1, "custom": {"x": [1]}}])
    assert fake.threads["t"] == [{"id": "run_1", "created_at": 1, "custom": {"x": [1]}}]
    fake.add_runs("u", [{"id": "run_1", "created_at": 2}])  # creates the thread
    assert fake.expected_ids("u") == ["run_1"]
    with pytest.raises(ValueError, match="already exists"):
        fake.add_thread("t")
    with pytest.raises(ValueError, match="already in thread"):
        fake.add_runs("t", [{"id": "run_1", "created_at": 2}])
    with pytest.raises(TypeError, match="string 'id'"):
        fake.add_runs("t", [{"created_at": 2}])
    with pytest.raises(TypeError, match="integer 'created_at'"):
        fake.add_runs("t", [{"id": "run_2", "created_at": "2024"}])
    with pytest.raises(TypeError):
        fake.add_runs("t", [{"id": "run_3", "created_at": 3, "x": object()}])
    assert fake.expected_ids("t") == ["run_1"]
    with pytest.raises(ValueError, match="order"):
        fake.expected_ids("t", "sideways")


# --- a rate-limited, distant server ----------------------------------------------------------


@pytest.mark.parametrize("style", ["bucket", "per-minute", "none"])
async def test_rate_limit_answers_429s_past_the_burst(
    http: aiohttp.ClientSession, style: str
) -> None:
    async with FakeServer(api_key=KEY, rate_limit=RateLimit(2, burst=3, headers=style)) as fake:
        tid = fake.seed(1, 5)[0]
        url = f"{fake.base_url}/threads/{tid}/runs"
        answers = []
        for _ in range(5):
            async with http.get(url) as response:
                answers.append((response.status, response.headers, await response.json()))
    statuses = [status for status, _, _ in answers]
    assert statuses[:3] == [200, 200, 200]  # the burst
    assert 429 in statuses[3:]  # then 2 per second: at most one more passes in a test's time
    _, headers, body = next(answer for answer in answers if answer[0] == 429)
    jsonschema.validate(body, spec_schema("ErrorResponse"))
    assert body["error"]["code"] == "rate_limit_exceeded"
    wait_ms = int(headers["retry-after-ms"])
    assert 0 < wait_ms <= 500  # one token at 2 per second
    assert headers["retry-after"] == "1"
    if style == "none":
        assert not any(name.startswith("x-ratelimit") for name in headers)
        return
    first = answers[0][1]
    limit = int(first["x-ratelimit-limit-requests"])
    assert limit == (3 if style == "bucket" else 120)
    assert int(first["x-ratelimit-remaining-requests"]) == limit - 1
    assert first["x-ratelimit-reset-requests"].endswith("ms")  # 0.5 s to refill one token
    assert int(headers["x-ratelimit-remaining-requests"]) == (0 if style == "bucket" else 117)


async def test_rate_limit_refills_and_spares_other_paths(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY, rate_limit=(50, 1)) as fake:
        assert fake.rate_limit == RateLimit(50, 1)
        tid = fake.seed(1, 2)[0]
        url = f"{fake.base_url}/threads/{tid}/runs"
        async with http.get(url) as response:
            assert response.status == 200
        async with http.get(f"{fake.base_url}/models") as response:
            assert response.status == 404  # not a listing: no token taken, no 429
        async with http.get(url) as response:
            assert response.status == 429
            wait = int(response.headers["retry-after-ms"]) / 1000
        await asyncio.sleep(wait + 0.01)
        async with http.get(url) as response:
            assert response.status == 200


async def test_latency_delays_every_answer(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY, latency=0.2) as fake:
        tid = fake.seed(1, 1)[0]
        started = time.monotonic()
        async with http.get(f"{fake.base_url}/threads/{tid}/runs") as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests_per_second": 0}, "requests_per_second must be a number > 0"),
        ({"requests_per_second": True}, "requests_per_second must be a number > 0"),
        ({"requests_per_second": 5, "burst": 0}, "burst must be an integer >= 1"),
        ({"requests_per_second": 5, "burst": 2.5}, "burst must be an integer >= 1"),
        ({"requests_per_second": 5, "headers": "openai"}, "headers must be 'bucket'"),
    ],
)
def test_rate_limit_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(**kwargs)


@pytest.mark.parametrize("latency", [-1, float("inf"), float("nan"), "1"])
def test_latency_must_be_seconds(latency: Any) -> None:
    with pytest.raises(ValueError, match="latency must be a number of seconds >= 0"):
        FakeServer(latency=latency)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0001, "1ms"),
        (0.02, "20ms"),
        (0.9991, "1000ms"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (90.25, "1m30.25s"),
        (360, "6m0s"),
    ],
)
def test_go_duration_writes_what_the_client_reads(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
    assert parse_go_duration(text) == pytest.approx(seconds, abs=0.001)


# --- outages, failing threads and the request log (the fleet's acceptance checks) ---------


async def test_outage_answers_every_listing_then_ends(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY) as fake:
        tid = fake.seed(1, 2)[0]
        url = fake.url_for(tid)
        fake.add_fault(Fault(status=429, headers={"retry-after-ms": "500"}, thread_id=tid))
        fake.outage(status=503, headers={"retry-after": "1"})
        active = [fake.outage_active]
        for _ in range(3):
            async with http.get(url) as response:
                assert response.status == 503
                assert response.headers["retry-after"] == "1"
                ERROR_VALIDATOR.validate(orjson.loads(await response.read()))
        async with http.get(f"{fake.base_url}/models") as response:
            assert response.status == 404  # not a listing: not part of the outage
        assert len(fake.pending_faults) == 1  # nothing used up during the outage
        fake.end_outage()
        active.append(fake.outage_active)
        assert active == [True, False]
        async with http.get(url) as response:
            assert response.status == 429  # the queued fault, still there
        async with http.get(url) as response:
            assert response.status == 200
        assert [r.status for r in fake.requests] == [503, 503, 503, 404, 429, 200]


async def test_an_outage_of_some_seconds_ends_by_itself(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY) as fake:
        tid = fake.seed(1, 2)[0]
        fake.outage(0.05)
        async with http.get(fake.url_for(tid)) as response:
            assert response.status == 503
        await asyncio.sleep(0.2)
        assert not fake.outage_active
        async with http.get(fake.url_for(tid)) as response:
            assert response.status == 200


async def test_a_revoked_key_from_now_on(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY) as fake:
        tid = fake.seed(1, 2)[0]
        fake.outage(status=401, error_code="invalid_api_key")
        async with http.get(fake.url_for(tid)) as response:
            assert response.status == 401
            body = orjson.loads(await response.read())
            assert body["error"]["code"] == "invalid_api_key"


async def test_failing_threads_fail_for_good(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY) as fake:
        bad, gone, good = fake.seed(3, 2)
        fake.chaos(1.0, kinds=["500"])  # a failing thread answers its own status, not chaos
        fake.fail_threads([bad], status=400)
        fake.fail_threads([gone])
        assert fake.failing_threads == {bad: 400, gone: 404}
        for tid, status in ((bad, 400), (gone, 404), (bad, 400), (good, 500)):
            async with http.get(fake.url_for(tid)) as response:
                assert response.status == status
                ERROR_VALIDATOR.validate(orjson.loads(await response.read()))
        assert [r.fault for r in fake.requests[:3]] == [None, None, None]
        del fake.failing_threads[bad]
        fake.chaos(0)
        async with http.get(fake.url_for(bad)) as response:
            assert response.status == 200


async def test_the_request_log_has_the_server_clock(http: aiohttp.ClientSession) -> None:
    async with FakeServer(api_key=KEY) as fake:
        tid = fake.seed(1, 2)[0]
        before = time.monotonic()
        for _ in range(3):
            async with http.get(fake.url_for(tid)) as response:
                assert response.status == 200
        times = [r.received_at for r in fake.requests]
        assert before <= times[0] <= times[1] <= times[2] <= time.monotonic()
        assert {r.path for r in fake.requests} == {f"/v1/threads/{tid}/runs"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.outage(0), "seconds must be a number > 0"),
        (lambda f: f.outage(1, status=200), "status must be an HTTP error status"),
        (lambda f: f.fail_threads(["t"], status=302), "status must be an HTTP error status"),
    ],
)
def test_outage_and_failing_threads_refuse_bad_settings(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(FakeServer())


def test_fail_threads_refuses_one_string() -> None:
    with pytest.raises(TypeError, match="not one string"):
        FakeServer().fail_threads("thread_1")
