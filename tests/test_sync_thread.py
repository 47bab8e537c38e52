"""``aiorunlist.sinks.sync_thread``: one thread, or one slice of it, into a sink, against a
real SQLite file and a real PostgreSQL database (the ``sink_url`` fixture)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorunlist import Request
from aiorunlist.exceptions import APIResponseValidationError
from aiorunlist.sinks import Sink, SinkSettingsError, open_sink, sync_thread
from aiorunlist.testing import FakeServer, Fault, MockResponse, MockTransport
from tests.conftest import API_KEY, SOCKETLESS_URL, fast_client
from tests.test_sinks import query as _query

pytestmark = pytest.mark.anyio

SETTINGS = {"order": "desc", "page_size": "10"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer(api_key=API_KEY) as srv:
        yield srv


async def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """``sql``'s rows, read in a thread of its own (the helper runs an event loop of its own)."""
    return await anyio.to_thread.run_sync(_query, url, sql)


async def stored_ids(url: str, thread_id: str) -> list[str]:
    rows = await query(url, f"SELECT id FROM runs WHERE thread_id = '{thread_id}'")  # noqa: S608
    return [row[0] for row in rows]


async def test_slices_store_a_thread_once_page_by_page(fake: FakeServer, sink_url: str) -> None:
    """Slices of 2 pages, each going on from where the sink says, store every run once."""
    (thread_id,) = fake.seed(1, 45)
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(sink_url, settings=SETTINGS) as sink,
    ):
        results = []
        while True:
            result = await sync_thread(client, sink, thread_id, page_size=10, max_pages=2)
            results.append(result)
            if not result.more:
                break
    assert [r.pages for r in results] == [2, 2, 1]
    assert [r.runs for r in results] == [20, 20, 5]
    assert [r.state for r in results] == ["pending", "pending", "done"]
    assert all(r.error is None and not r.lost for r in results)
    assert results[0].cursor == fake.expected_ids(thread_id)[19]
    ids = await stored_ids(sink_url, thread_id)
    assert sorted(ids) == sorted(fake.expected_ids(thread_id))
    assert await query(sink_url, "SELECT state, runs FROM threads") == [("done", 45)]


async def test_a_copy_that_loses_the_compare_and_set_stops(fake: FakeServer, sink_url: str) -> None:
    """Ten copies of the same job at once: every run stored exactly once, the losers say so."""
    (thread_id,) = fake.seed(1, 95)
    fake.latency = 0.005
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(sink_url, settings=SETTINGS) as sink,
    ):
        results = await asyncio.gather(
            *(sync_thread(client, sink, thread_id, page_size=10) for _ in range(10))
        )
        # Whoever lost, the thread is finished by calling again from where the sink says.
        while (again := await sync_thread(client, sink, thread_id, page_size=10)).more:
            pass
    assert any(r.lost for r in results)
    assert again.state == "done"
    ids = await stored_ids(sink_url, thread_id)
    assert Counter(ids).most_common(1)[0][1] == 1
    assert sorted(ids) == sorted(fake.expected_ids(thread_id))


async def test_errors_of_the_thread_fail_it_others_leave_it_for_later(
    fake: FakeServer, sink_url: str
) -> None:
    """A 404 marks the thread failed; a 503 the retries did not cure leaves it pending with
    the pages stored so far, and the same call later completes it."""
    missing = "thread_missing"
    (thread_id,) = fake.seed(1, 30)
    async with (
        fast_client(fake.base_url, max_retries=0) as client,
        await open_sink(sink_url, settings=SETTINGS) as sink,
    ):
        gone = await sync_thread(client, sink, missing, page_size=10)
        assert gone.state == "failed"
        assert not gone.retry_later
        fake.add_fault(Fault(status=503, thread_id=thread_id, times=1))
        first = await sync_thread(client, sink, thread_id, page_size=10)
        assert first.retry_later
        assert first.more
        assert first.pages == 0
        assert first.state is None  # nothing stored, nothing marked
        done = await sync_thread(client, sink, thread_id, page_size=10)
        assert done.state == "done"
        assert done.runs == 30
        fake.add_fault(Fault(status=401, thread_id=None, times=1))
        again = await sync_thread(client, sink, thread_id, page_size=10)
        assert again.fatal
        assert again.retry_later
        assert again.state == "done"
    assert await query(sink_url, "SELECT thread_id, state FROM threads ORDER BY thread_id") == [
        (thread_id, "done"),
        (missing, "failed"),
    ]


async def test_bad_arguments_are_refused_before_anything_is_sent(
    fake: FakeServer, tmp_path: object
) -> None:
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(f"sqlite:///{tmp_path}/runs.db", settings=SETTINGS) as sink,
    ):
        for kwargs in ({"max_pages": 0}, {"page_size": 0}, {"order": "up"}):
            with pytest.raises(ValueError, match=r"max_pages|page_size|order"):
                await sync_thread(client, sink, "thread_1", **kwargs)
        with pytest.raises(ValueError, match="thread"):
            await sync_thread(client, sink, "")
    assert fake.requests == []


async def test_threads_are_recorded_listed_and_counted(sink_url: str) -> None:
    async with await open_sink(sink_url, settings=SETTINGS) as sink:
        assert isinstance(sink, Sink)
        assert await sink.add_threads(["b", "a", "b"]) == ["b", "a"]
        assert await sink.add_threads(["a", "c"]) == ["c"]
        assert await sink.thread_counts() == {"pending": 3}
        listed = await sink.list_threads(["pending"], limit=2)
        assert [t.thread_id for t in listed] == ["a", "b"]
        assert all(t.cursor is None and t.state == "pending" for t in listed)
        rest = await sink.list_threads(["pending"], after="b")
        assert [t.thread_id for t in rest] == ["c"]
        assert await sink.list_threads(["done", "failed"]) == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    runs=st.integers(0, 40),
    page_size=st.integers(1, 12),
    max_pages=st.none() | st.integers(1, 4),
    stops=st.lists(st.integers(1, 5), max_size=6),
    order=st.sampled_from(["asc", "desc"]),
)
def test_slices_and_interruptions_store_every_run_once(
    tmp_path_factory: pytest.TempPathFactory,
    runs: int,
    page_size: int,
    max_pages: int | None,
    stops: list[int],
    order: Literal["asc", "desc"],
) -> None:
    """However a thread is cut into slices, and wherever each call is stopped, calling again
    while ``more`` ends with every run stored once and the thread done."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sync') / 'runs.db'}"
    server = FakeServer(api_key=API_KEY)
    (thread_id,) = server.seed(1, runs)

    async def run() -> None:
        transport = MockTransport(server.handle)
        settings_ = {"order": order, "page_size": str(page_size)}
        async with (
            fast_client(SOCKETLESS_URL, transport=transport) as client,
            await open_sink(url, settings=settings_) as sink,
        ):
            plan = iter(stops)
            for _ in range(10 * (runs + 2)):
                limit = next(plan, None)
                pages: list[int] = []

                def stop(limit: int | None = limit, pages: list[int] = pages) -> bool:
                    pages.append(1)
                    return limit is not None and len(pages) >= limit

                result = await sync_thread(
                    client,
                    sink,
                    thread_id,
                    order=order,
                    page_size=page_size,
                    max_pages=max_pages,
                    stop_when=stop,
                )
                assert result.error is None
                assert not result.lost
                if not result.more:
                    break
            assert result.state == "done"

    anyio.run(run)
    stored = [row[0] for row in _query(url, "SELECT id FROM runs")]
    assert sorted(stored) == sorted(server.expected_ids(thread_id))
    assert _query(url, "SELECT state, runs FROM threads") == [("done", runs)]


async def test_another_order_or_page_size_than_the_sinks_is_refused(
    fake: FakeServer, sink_url: str
) -> None:
    """The cursor a desc slice stored is meaningless in asc: listing on from it would end the
    thread with most runs missing. Refused before any request, whatever the sink was opened
    with; a sink that holds no settings is refused too."""
    (thread_id,) = fake.seed(1, 30)
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(sink_url, settings=SETTINGS) as sink,
    ):
        first = await sync_thread(client, sink, thread_id, page_size=10, max_pages=1)
        assert first.more
        sent = len(fake.requests)
        for kwargs in ({"order": "asc", "page_size": 10}, {"page_size": 5}):
            with pytest.raises(SinkSettingsError, match=r"order|page_size"):
                await sync_thread(client, sink, thread_id, **kwargs)
        assert len(fake.requests) == sent
    # Opened without settings: those stored are the ones checked.
    async with fast_client(fake.base_url) as client, await open_sink(sink_url) as sink:
        assert (await sink.stored_settings())["order"] == "desc"
        with pytest.raises(SinkSettingsError, match="not asc"):
            await sync_thread(client, sink, thread_id, order="asc", page_size=10)
        done = await sync_thread(client, sink, thread_id, page_size=10)
        assert done.state == "done"
    assert sorted(await stored_ids(sink_url, thread_id)) == sorted(fake.expected_ids(thread_id))


async def test_a_sink_without_settings_is_refused(fake: FakeServer, tmp_path: object) -> None:
    (thread_id,) = fake.seed(1, 3)
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(f"sqlite:///{tmp_path}/runs.db") as sink,
    ):
        with pytest.raises(SinkSettingsError, match="holds no export settings"):
            await sync_thread(client, sink, thread_id)
    assert fake.requests == []


async def test_the_sinks_settings_are_read_once_per_sink(
    fake: FakeServer, sink_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet runs a slice per thread: the settings a sink holds (they never change once
    stored) are read from the database for its first slice only, and still checked."""
    thread_ids = fake.seed(3, 12)
    async with (
        fast_client(fake.base_url) as client,
        await open_sink(sink_url, settings=SETTINGS) as sink,
    ):
        reads = 0
        real = sink.stored_settings

        async def counted() -> dict[str, str]:
            nonlocal reads
            reads += 1
            return await real()

        monkeypatch.setattr(sink, "stored_settings", counted)
        for thread_id in thread_ids:
            result = await sync_thread(client, sink, thread_id, page_size=10)
            assert result.state == "done"
        assert reads == 1
        sent = len(fake.requests)
        with pytest.raises(SinkSettingsError, match="not asc"):
            await sync_thread(client, sink, thread_ids[0], order="asc", page_size=10)
        assert len(fake.requests) == sent


async def test_a_run_without_an_id_fails_the_thread(
    tmp_path: object,
) -> None:
    """A page whose run has no string id fails its thread (stored as failed, with why); the
    pages before it are kept."""
    page_one = {
        "object": "list",
        "data": [{"id": "run_b"}, {"id": "run_a"}],
        "first_id": "run_b",
        "last_id": "run_a",
        "has_more": True,
    }
    page_two = {
        "object": "list",
        "data": [{"id": 7}],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }

    def handler(request: Request) -> MockResponse:
        return MockResponse(200, body=page_two if "after=" in request.url else page_one)

    url = f"sqlite:///{tmp_path}/runs.db"
    transport = MockTransport(handler)
    async with (
        fast_client(SOCKETLESS_URL, transport=transport) as client,
        await open_sink(url, settings={"order": "desc", "page_size": "2"}) as sink,
    ):
        result = await sync_thread(client, sink, "thread_1", page_size=2)
        assert (result.state, result.pages, result.runs) == ("failed", 2, 2)
        assert isinstance(result.error, APIResponseValidationError)
        assert "string 'id'" in str(result.error)
        assert not result.retry_later
    rows = await query(url, "SELECT thread_id, state, last_error FROM threads ORDER BY 1")
    assert [row[:2] for row in rows] == [("thread_1", "failed")]
    assert "string 'id'" in rows[0][2]
    assert await stored_ids(url, "thread_1") == ["run_b", "run_a"]
