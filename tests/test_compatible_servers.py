"""Assistants-compatible servers: every listing API against each `FakeServer` quirk mode.

Over real HTTP on 127.0.0.1 (the hypothesis test goes socket-free through
``FakeServer.handle``): each run is handed out at most once, a repeat raises
:class:`PaginationError` before it is handed out, quirks are logged once per client, and
error bodies of any shape give the server's own words.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist._protocol import PageWalk, QuirkNotes, RawPage, error_message
from aiorunlist.testing import (
    BASE_CREATED_AT,
    FakeServer,
    Fault,
    MockTransport,
    Quirks,
    make_run,
)
from tests.conftest import API_KEY, fast_client

pytestmark = pytest.mark.anyio

TID = "thread_ties"
N_RUNS = 13


def tied_runs(thread_id: str, n: int, per_second: int = 3) -> list[dict[str, Any]]:
    """``n`` runs created ``per_second`` to a second, as runs created back to back are."""
    return [make_run(thread_id, i, created_at=BASE_CREATED_AT + i // per_second) for i in range(n)]


@pytest.fixture(params=sorted(Quirks.MODES))
async def quirky(request: pytest.FixtureRequest) -> AsyncIterator[FakeServer]:
    async with FakeServer(api_key=API_KEY, quirks=request.param) as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        yield server


async def list_with(
    api: str, client: aiorunlist.Client, thread_id: str, **kwargs: Any
) -> tuple[list[str], Exception | None]:
    """The run ids one listing API hands out, and the error that ended it, if any."""
    got: list[str] = []
    try:
        if api == "runs":
            async for run in client.runs(thread_id, **kwargs):
                got.append(str(run.id))
        elif api == "runs_many":
            async with client.runs_many([thread_id], **kwargs) as stream:
                async for run in stream:
                    got.append(str(run.id))
        else:
            async with client.pages_many([thread_id], **kwargs) as pages:
                async for page in pages:
                    got.extend(str(run.id) for run in page.runs)
    except aiorunlist.PaginationError as exc:
        return got, exc
    return got, None


APIS = ["runs", "runs_many", "pages_many"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("page_size", [1, 2, 5, 100])
async def test_every_api_hands_each_run_out_at_most_once_in_every_mode(
    quirky: FakeServer, api: str, order: str, page_size: int
) -> None:
    async with fast_client(quirky.base_url) as client:
        got, error = await list_with(api, client, TID, order=order, page_size=page_size)
    assert len(got) == len(set(got))
    assert set(got) <= set(quirky.expected_ids(TID))
    if error is not None:
        assert "already handed out" in str(error)


@pytest.mark.parametrize("api", APIS)
async def test_overlapping_desc_pages_raise_before_the_repeat(api: str) -> None:
    async with FakeServer(api_key=API_KEY, quirks="tie-unstable-cursor") as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        async with fast_client(server.base_url) as client:
            got, error = await list_with(api, client, TID, order="desc", page_size=2)
    assert isinstance(error, aiorunlist.PaginationError)
    assert error.thread_id == TID
    assert len(got) == len(set(got))
    text = str(error)
    repeated = text.split("run ", 1)[1].split(" ", 1)[0].strip("'")
    assert repeated in got  # names the run: one already handed out, not handed out again
    for words in ("pages overlap", "same second", 'order="asc"', f"check-server {TID}"):
        assert words in text


@pytest.mark.parametrize("api", APIS)
async def test_tie_unstable_server_lists_asc_completely(api: str) -> None:
    async with FakeServer(api_key=API_KEY, quirks="tie-unstable-cursor") as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        async with fast_client(server.base_url) as client:
            got, error = await list_with(api, client, TID, order="asc", page_size=2)
    assert error is None
    assert got == server.expected_ids(TID, "asc")


async def test_an_ignored_cursor_is_named_as_such() -> None:
    async with FakeServer(api_key=API_KEY, quirks="ignores-parameters") as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        ids = server.expected_ids(TID, "asc")
        async with fast_client(server.base_url) as client:
            for kwargs in ({"after": ids[5]}, {"before": ids[5]}):
                got, error = await list_with("runs", client, TID, order="asc", **kwargs)
                assert got == []
                assert error is not None
                text = str(error)
                name = next(iter(kwargs))
                assert f"ignored the '{name}' cursor" in text
                assert "never end" not in text


async def test_ignored_parameters_warn_once_per_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiorunlist")
    async with FakeServer(api_key=API_KEY, quirks="ignores-parameters") as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        server.add_thread("thread_b", tied_runs("thread_b", 7, per_second=1))
        async with fast_client(server.base_url) as client:
            for tid in (TID, "thread_b", TID):
                got = [run.id async for run in client.runs(tid, order="desc", page_size=5)]
                assert len(got) == len(set(got))
        kinds = [str(getattr(r, "quirk", None)) for r in caplog.records]
        assert sorted(kinds) == ["limit_ignored", "order_contradicted"]
        text = caplog.text
        assert "asked for at most 5 runs, the server sent 13" in text
        assert "asked for order=desc" in text
        async with fast_client(server.base_url) as other:  # a new client warns anew
            _ = [run async for run in other.runs(TID, page_size=5)]
        assert len(caplog.records) == 4


async def test_float_created_at_is_kept_exactly() -> None:
    async with FakeServer(api_key=API_KEY, quirks="ignores-parameters") as server:
        server.add_thread(TID, tied_runs(TID, 3))
        async with fast_client(server.base_url) as client:
            raw: list[Any] = []
            async with client.pages_many([TID], order="asc") as pages:
                async for page in pages:
                    raw.extend(page.raw)
    assert [type(r["created_at"]) for r in raw] == [float, float, float]


async def test_absent_has_more_on_a_full_page_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiorunlist")
    async with FakeServer(api_key=API_KEY, quirks="no-has-more") as server:
        server.add_thread(TID, tied_runs(TID, N_RUNS))
        async with fast_client(server.base_url) as client:
            got = [run.id async for run in client.runs(TID, page_size=5)]
            assert len(got) == 5  # has_more absent: the listing ends; the warning says so
            got = [run.id async for run in client.runs(TID, page_size=4)]
    assert len(got) == 4
    (record,) = caplog.records
    assert "a full page (5 runs, the limit) came with has_more absent" in record.getMessage()
    assert f"check-server {TID}" in record.getMessage()


async def test_unknown_thread_as_an_empty_list() -> None:
    async with FakeServer(api_key=API_KEY, quirks="no-has-more") as server:
        client = fast_client(server.base_url)
        async with client:
            assert [run async for run in client.runs("thread_nope")] == []


async def test_a_full_last_page_after_has_more_true_does_not_warn(
    server: FakeServer, client: aiorunlist.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiorunlist")
    server.add_thread(TID, tied_runs(TID, 10))
    got = [run.id async for run in client.runs(TID, page_size=5)]
    assert len(got) == 10
    server.add_thread("thread_five", tied_runs("thread_five", 5))
    got = [run.id async for run in client.runs("thread_five", page_size=5)]
    assert len(got) == 5
    assert caplog.records == []


# --- the walk, sans I/O -------------------------------------------------------------------------


def _raw(ids: list[str], has_more: bool, **extra: Any) -> RawPage:
    data = [{"id": i, "created_at": n} for n, i in enumerate(ids)]
    body = {"object": "list", "data": data, "has_more": has_more, **extra}
    return RawPage(body, data, has_more, 200, None)


def test_a_run_twice_in_one_page_is_refused() -> None:
    walk = PageWalk("t", after=None, before=None)
    with pytest.raises(aiorunlist.PaginationError, match="lists run 'a' twice"):
        walk.ordered(_raw(["a", "b", "a"], False))


def test_the_walk_keeps_one_id_per_run_handed_out() -> None:
    walk = PageWalk("t", after=None, before=None, order="asc", limit=3, notes=QuirkNotes())
    for n in range(4):
        page = _raw([f"r{n}{k}" for k in range(3)], True)
        walk.ordered(page)
        walk.advance(page)
    assert len(walk.ids) == 12
    with pytest.raises(aiorunlist.PaginationError, match="run 'r21' was already handed out"):
        walk.ordered(_raw(["r40", "r21"], False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(st.integers(1, 4), min_size=1, max_size=8),
    page_size=st.integers(1, 6),
    order=st.sampled_from(["asc", "desc"]),
    mode=st.sampled_from(sorted(Quirks.MODES)),
)
async def test_no_mode_ever_hands_a_run_out_twice(
    groups: list[int], page_size: int, order: str, mode: str
) -> None:
    server = FakeServer(api_key=API_KEY, quirks=mode)
    runs: list[dict[str, Any]] = []
    for second, size in enumerate(groups):
        runs += [
            make_run(TID, len(runs) + k, created_at=BASE_CREATED_AT + second) for k in range(size)
        ]
    server.add_thread(TID, runs)
    async with aiorunlist.Client(
        API_KEY, base_url="https://fake.test/v1", transport=MockTransport(server.handle)
    ) as client:
        got, error = await list_with("runs", client, TID, order=order, page_size=page_size)
    assert len(got) == len(set(got))
    if mode == "tie-unstable-cursor" and order == "asc":
        assert error is None
        assert got == server.expected_ids(TID, "asc")


# --- error bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "No thread found.", "type": "x"}}', "No thread found."),
        (b'{"message": "Route not found", "error": "Not Found", "statusCode": 404}', "Route"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (
            b'{"detail": [{"loc": ["query", "limit"], "msg": "must be <= 100"}]}',
            "query.limit: must be <= 100",
        ),
        (b"upstream exploded", "upstream exploded"),
        (b'{"weird": true}', '{"weird": true}'),
        (b"x" * 300, "x" * 200 + "..."),
    ],
)
def test_error_messages_of_any_shape(body: bytes, expected: str) -> None:
    try:
        decoded: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = body.decode()
    message = error_message(decoded, body)
    assert message is not None
    assert message.startswith(expected)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("tie-unstable-cursor", "No thread found with id 'thread_nope'."),
        ("ignores-parameters", "No thread found with id 'thread_nope'."),
    ],
)
async def test_error_bodies_of_each_mode_give_the_servers_words(mode: str, words: str) -> None:
    async with FakeServer(api_key=API_KEY, quirks=mode) as server:
        client = fast_client(server.base_url)
        async with client:
            with pytest.raises(aiorunlist.NotFoundError) as caught:
                _ = [run async for run in client.runs("thread_nope")]
    assert words in str(caught.value)
    assert "no error message" not in str(caught.value)
    assert caught.value.request_id is None
    assert "/v1" not in str(caught.value)  # base_url ends in /v1: no hint


async def test_fastapi_422_detail_list_is_read() -> None:
    async with FakeServer(api_key=API_KEY, quirks="no-has-more", max_limit=50) as server:
        server.add_thread(TID, tied_runs(TID, 3))
        async with fast_client(server.base_url) as client:
            with pytest.raises(aiorunlist.UnprocessableEntityError) as caught:
                await client.list_page(TID, limit=80)
    assert "query.limit: Invalid 'limit'" in str(caught.value)


async def test_a_404_without_v1_in_base_url_suggests_it() -> None:
    quirks = Quirks(errors="fastapi")
    async with FakeServer(api_key=API_KEY, quirks=quirks) as server:
        base = server.base_url.removesuffix("/v1")
        async with fast_client(base) as client:
            with pytest.raises(aiorunlist.NotFoundError) as caught:
                _ = [run async for run in client.runs(TID)]
    text = str(caught.value)
    assert "HTTP 404: Invalid URL" in text
    assert f"try base_url='{base}/v1'" in text


async def test_a_plain_text_error_body_is_quoted(
    server: FakeServer, client: aiorunlist.Client
) -> None:
    server.add_fault(
        Fault(status=404, body=b"Cannot GET /threads", headers={"Content-Type": "text/plain"})
    )
    with pytest.raises(aiorunlist.NotFoundError, match="HTTP 404: Cannot GET /threads"):
        _ = [run async for run in client.runs(TID)]


async def test_has_more_false_on_a_full_first_page_warns_but_not_after_a_cursor(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiorunlist")
    runs = tied_runs(TID, 8)
    server.add_thread(TID, runs)
    ids = server.expected_ids(TID, "desc")
    async with fast_client(server.base_url) as client:
        # Resumed from a cursor, a full last page is the end of a listing of 4 + 4 runs.
        got = [run.id async for run in client.runs(TID, page_size=4, after=ids[3])]
        assert got == ids[4:]
        assert caplog.records == []
        # A server that always says false: its first full page is suspect.
        body = orjson.dumps({"object": "list", "data": runs[3::-1], "has_more": False})
        server.add_fault(Fault(body=body))
        got = [run.id async for run in client.runs(TID, page_size=4)]
        assert len(got) == 4
    (record,) = caplog.records
    assert "came with has_more false" in record.getMessage()


def test_quirks_are_checked() -> None:
    with pytest.raises(ValueError, match="one of"):
        FakeServer(quirks="no-such-server")
    with pytest.raises(ValueError, match="cursor must be one of"):
        Quirks(cursor="sideways")  # type: ignore[arg-type]
    assert FakeServer(quirks="no-has-more").quirks is Quirks.MODES["no-has-more"]
    assert FakeServer().quirks == Quirks()


_ID = st.one_of(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.none(), st.just(7))


@given(pages=st.lists(st.lists(_ID, max_size=5), min_size=1, max_size=5))
def test_the_walk_refuses_exactly_the_repeated_string_ids(pages: list[list[Any]]) -> None:
    """A model: a page is refused iff one of its string ids came before (in it or earlier);
    ids that are not strings are never compared."""
    walk = PageWalk("t", after=None, before=None)
    seen: set[str] = set()
    for ids in pages:
        page = RawPage({}, [{"id": i} for i in ids], False, 200, None)
        strings = [i for i in ids if isinstance(i, str)]
        repeated = len(set(strings)) < len(strings) or bool(seen & set(strings))
        if repeated:
            with pytest.raises(aiorunlist.PaginationError):
                walk.ordered(page)
            return
        assert walk.ordered(page) == page.data
        seen |= set(strings)


def test_odd_ids_and_timestamps_take_the_careful_path() -> None:
    walk = PageWalk("t", after=None, before=None, order="desc", limit=10, notes=QuirkNotes())
    odd = [{"id": ["not", "hashable"], "created_at": None}, {"id": "a", "created_at": 5}]
    page = RawPage({"has_more": False}, odd, False, 200, None)
    assert walk.ordered(page) == odd
    with pytest.raises(aiorunlist.PaginationError, match="run 'a' was already handed out"):
        walk.ordered(RawPage({}, [{"id": ["x"]}, {"id": "a"}], False, 200, None))
