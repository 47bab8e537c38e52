"""``check_server`` and ``aiorunlist check-server`` against a conformant server and each
`FakeServer` quirk mode, over loopback; and the CLI's jsonl keeping the server's key order."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import aiorunlist
from aiorunlist.testing import (
    BASE_CREATED_AT,
    FakeServer,
    MockResponse,
    MockTransport,
    Quirks,
    make_run,
)
from tests.conftest import API_KEY, fast_client
from tests.test_cli import LiveServer, invoke, jsonl, runs_args

TID = "thread_probe"


def tied_runs(thread_id: str, n: int, per_second: int = 3) -> list[dict[str, Any]]:
    return [make_run(thread_id, i, created_at=BASE_CREATED_AT + i // per_second) for i in range(n)]


async def report_for(quirks: Quirks | str | None, n: int = 13) -> aiorunlist.ServerReport:
    async with FakeServer(api_key=API_KEY, quirks=quirks) as server:
        server.add_thread(TID, tied_runs(TID, n))
        client = fast_client(server.base_url)
        async with client:
            return await aiorunlist.check_server(client, TID)


def failing(report: aiorunlist.ServerReport) -> set[str]:
    return {check.check for check in report.quirks}


@pytest.mark.anyio
async def test_a_conformant_server_passes_every_check() -> None:
    report = await report_for(None)
    assert [check.check for check in report.checks] == list(aiorunlist.ServerReport.CHECK_NAMES)
    assert report.ok, report.quirks
    assert report.runs == 13
    assert dict(report.recommended) == {"page_size": 100}


@pytest.mark.anyio
async def test_tie_unstable_cursors_are_named_with_the_remedy() -> None:
    report = await report_for("tie-unstable-cursor")
    assert not report.ok
    assert failing(report) == {
        "order",
        "after",
        "before",
        "stable_pages",
        "request_id",
        "error_shape",
    }
    assert "order=desc" in report["stable_pages"].detail
    assert "order=asc" not in report["stable_pages"].detail
    assert "listed twice" in report["stable_pages"].detail
    assert "created in the cursor's second" in report["after"].detail
    assert dict(report.recommended) == {"page_size": 100, "order": "asc"}
    assert '"message":"No thread found' in report["error_shape"].detail


@pytest.mark.anyio
async def test_ignored_parameters_are_named() -> None:
    report = await report_for("ignores-parameters")
    assert failing(report) == {
        "limit",
        "order",
        "after",
        "before",
        "first_last_id",
        "request_id",
        "error_shape",
    }
    assert "the cursor is ignored" in report["after"].detail
    assert "'limit' is ignored" in report["limit"].detail
    assert report.recommended["cursors"] is False


@pytest.mark.anyio
async def test_no_has_more_is_named() -> None:
    report = await report_for("no-has-more")
    assert failing(report) == {
        "after",
        "before",
        "has_more",
        "request_id",
        "unknown_thread",
        "error_shape",
        "stable_pages",
    }
    assert "never sent" in report["has_more"].detail
    assert "200 with an empty list" in report["unknown_thread"].detail
    assert "skipped" in report["stable_pages"].detail


@pytest.mark.anyio
@pytest.mark.parametrize("quirk", ["request_ids", "page_ids", "has_more"])
async def test_each_single_quirk_fails_its_own_check(quirk: str) -> None:
    check = {"request_ids": "request_id", "page_ids": "first_last_id", "has_more": "has_more"}
    quirks = {
        "request_ids": Quirks(request_ids=False),
        "page_ids": Quirks(page_ids=False),
        "has_more": Quirks(has_more=False),
    }
    report = await report_for(quirks[quirk])
    assert failing(report) == {check[quirk]}


@pytest.mark.anyio
async def test_too_few_runs_is_said() -> None:
    report = await report_for(None, n=2)
    assert not report.enough_runs
    assert not report.ok
    assert report.checks == ()
    assert report.note is not None
    assert "has 2 run(s)" in report.note


@pytest.mark.anyio
async def test_an_unknown_thread_cannot_be_probed(server: FakeServer) -> None:
    client = fast_client(server.base_url)
    async with client:
        with pytest.raises(aiorunlist.NotFoundError):
            await aiorunlist.check_server(client, "thread_missing")
        with pytest.raises(ValueError, match="thread_id"):
            await aiorunlist.check_server(client, "")
    assert len(server.requests) == 1


@pytest.mark.anyio
async def test_the_probe_only_reads(server: FakeServer) -> None:
    server.add_thread(TID, tied_runs(TID, 13))
    before = orjson.dumps(server.threads)
    client = fast_client(server.base_url)
    async with client:
        await aiorunlist.check_server(client, TID)
    assert orjson.dumps(server.threads) == before
    assert {r.method for r in server.requests} == {"GET"}
    assert len(server.requests) < 100


# --- the command -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        server.do(lambda: server.server.add_thread(TID, tied_runs(TID, 13)))
        yield server


def check_args(live: LiveServer, *args: str) -> list[str]:
    return ["check-server", TID, "--base-url", live.url, "--api-key", API_KEY, *args]


def test_check_server_on_a_conformant_server_exits_0(live: LiveServer) -> None:
    result = invoke(check_args(live))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in aiorunlist.ServerReport.CHECK_NAMES:
        assert any(line.split()[:2] == [name, "ok"] for line in lines), name
    assert "recommended: page_size=100" in result.stdout
    assert API_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("mode", sorted(Quirks.MODES))
def test_check_server_json_names_the_quirks_and_exits_1(live: LiveServer, mode: str) -> None:
    live.do(lambda: setattr(live.server, "quirks", Quirks.MODES[mode]))
    result = invoke(check_args(live, "--json"))
    assert result.exit_code == 1, result.stderr
    report = orjson.loads(result.stdout)
    assert [c["check"] for c in report["checks"]] == list(aiorunlist.ServerReport.CHECK_NAMES)
    assert all(set(c) == {"check", "ok", "detail"} for c in report["checks"])
    assert any(not c["ok"] for c in report["checks"])
    assert report["recommended"]["page_size"] == 100


def test_check_server_text_names_the_remedy(live: LiveServer) -> None:
    live.do(lambda: setattr(live.server, "quirks", Quirks.MODES["tie-unstable-cursor"]))
    result = invoke(check_args(live))
    assert result.exit_code == 1
    assert 'recommended: page_size=100, order="asc"' in result.stdout
    assert any(line.split()[:2] == ["stable_pages", "quirk"] for line in result.stdout.splitlines())


def test_check_server_bad_input_exits_2(live: LiveServer) -> None:
    result = invoke(["check-server", TID, "--base-url", live.url])
    assert result.exit_code == 2
    assert "no API key" in result.stderr
    result = invoke(["check-server", " ", "--base-url", live.url, "--api-key", API_KEY])
    assert result.exit_code == 2
    assert "thread_id" in result.stderr
    result = invoke(check_args(live, "--base-url", "ftp://x"))
    assert result.exit_code == 2
    assert "base_url" in result.stderr


def test_check_server_on_a_missing_thread_or_too_few_runs_exits_2(live: LiveServer) -> None:
    result = invoke(["check-server", "thread_nope", "--base-url", live.url, "--api-key", API_KEY])
    assert result.exit_code == 2
    assert "cannot probe the server" in result.stderr
    assert "No thread found with id 'thread_nope'" in result.stderr
    live.do(lambda: live.server.add_thread("thread_two", tied_runs("thread_two", 2)))
    result = invoke(["check-server", "thread_two", "--base-url", live.url, "--api-key", API_KEY])
    assert result.exit_code == 2
    assert "has 2 run(s)" in result.stdout


def test_check_server_without_v1_gets_the_hint(live: LiveServer) -> None:
    base = live.url.removesuffix("/v1")
    result = invoke(["check-server", TID, "--base-url", base, "--api-key", API_KEY])
    assert result.exit_code == 2
    assert f"try base_url='{base}/v1'" in result.stderr


# --- jsonl keeps the server's key order -------------------------------------------------------


def _keys(value: Any) -> Any:
    """The key order of every object in ``value``, nested ones included."""
    if isinstance(value, dict):
        return [(k, _keys(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return None


def _scrambled(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` with its keys (and those of nested objects) in reverse order."""
    return {
        k: (_scrambled(v) if isinstance(v, dict) else v) for k, v in reversed(list(run.items()))
    }


@pytest.mark.parametrize("mode", ["none", *sorted(Quirks.MODES)])
def test_jsonl_keeps_the_servers_key_order_and_values(live: LiveServer, mode: str) -> None:
    runs = [_scrambled(run) for run in tied_runs("thread_keys", 9)]
    runs[0]["x_unknown"] = {"z": 1, "a": [2.5, None]}
    live.do(lambda: live.server.add_thread("thread_keys", runs))
    if mode != "none":
        live.do(lambda: setattr(live.server, "quirks", Quirks.MODES[mode]))
    result = invoke(runs_args(live, "thread_keys", "--order", "asc", "--page-size", "100"))
    assert result.exit_code == 0, result.stderr
    lines = jsonl(result.stdout_bytes)
    float_time = mode == "ignores-parameters"
    by_id = {run["id"]: run for run in runs}
    assert len(lines) == 9
    for line in lines:
        sent = by_id[line["id"]]
        if float_time:
            sent = {**sent, "created_at": float(sent["created_at"])}
        assert line == sent
        assert _keys(line) == _keys(sent)
    if float_time:
        assert b'"created_at":1714' in result.stdout_bytes
        assert all(isinstance(line["created_at"], float) for line in lines)


def test_the_cli_never_writes_a_run_twice_on_overlapping_pages(live: LiveServer) -> None:
    live.do(lambda: setattr(live.server, "quirks", Quirks.MODES["tie-unstable-cursor"]))
    result = invoke(runs_args(live, TID, "--order", "desc", "--page-size", "2"))
    assert result.exit_code == 1
    ids = [line["id"] for line in jsonl(result.stdout_bytes)]
    assert ids
    assert max(Counter(ids).values()) == 1
    assert "pages overlap" in result.stderr
    result = invoke(runs_args(live, TID, "--order", "asc", "--page-size", "2"))
    assert result.exit_code == 0, result.stderr
    ids = [line["id"] for line in jsonl(result.stdout_bytes)]
    assert ids == live.server.expected_ids(TID, "asc")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "odd",
    [
        b'{"object": "list", "data": [], "has_more": false}',
        b'{"object": "list", "data": [{"id": "run_x"}], "has_more": true}',
        b'{"data": "nope"}',
        b"[1, 2]",
        b"<html>not json</html>",
    ],
)
async def test_odd_answers_to_the_probes_are_quirks_not_crashes(odd: bytes) -> None:
    """Every probe after the first listing gets an odd answer: the report says so."""
    server = FakeServer(api_key=API_KEY)
    server.add_thread(TID, tied_runs(TID, 13))
    seen = 0

    async def handler(request: aiorunlist.Request) -> MockResponse:
        nonlocal seen
        seen += 1
        if seen == 1:
            return await server.handle(request)
        return MockResponse(200, body=odd, headers={"Content-Type": "application/json"})

    client = aiorunlist.Client(
        API_KEY, base_url="https://fake.test/v1", transport=MockTransport(handler)
    )
    async with client:
        report = await aiorunlist.check_server(client, TID)
    assert report.enough_runs
    assert not report.ok
    assert {"order", "after", "before", "stable_pages"} <= {c.check for c in report.quirks}


@pytest.mark.anyio
async def test_a_first_answer_that_is_not_a_list_cannot_be_probed() -> None:
    def handler(request: aiorunlist.Request) -> MockResponse:
        return MockResponse(200, body=b"<html>portal</html>", headers={"Content-Type": "text/html"})

    client = aiorunlist.Client(
        API_KEY, base_url="https://fake.test/v1", transport=MockTransport(handler)
    )
    async with client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="'data' array"):
            await aiorunlist.check_server(client, TID)
