"""Many threads: bounded, lazy, cancellation-safe fan-out over real HTTP."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import aiohttp
import anyio
import anyio.lowlevel
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist.testing import FakeServer, Fault, make_runs
from tests.conftest import budget_of, fast_client, other_tasks

pytestmark = pytest.mark.anyio

_examples = itertools.count()


async def test_every_run_of_every_thread(client: aiorunlist.Client, server: FakeServer) -> None:
    tids = server.seed(30, lambda i: (i * 7) % 23, seed=1)
    by_thread: dict[str, list[str | None]] = defaultdict(list)
    async with client.runs_many(tids, concurrency=5, page_size=4) as stream:
        async for run in stream:
            assert run.thread_id is not None
            by_thread[run.thread_id].append(run.id)
    for tid in tids:
        assert by_thread.get(tid, []) == server.expected_ids(tid)
    assert stream.failures == {}
    assert stream.threads_done == 30


async def test_async_iterable_of_ids(client: aiorunlist.Client, server: FakeServer) -> None:
    tids = server.seed(5, 3)

    async def ids() -> AsyncIterator[str]:
        for tid in tids:
            await anyio.lowlevel.checkpoint()
            yield tid

    async with client.runs_many(ids(), order="asc") as stream:
        got = [run.id async for run in stream]
    assert sorted(map(str, got)) == sorted(i for t in tids for i in server.expected_ids(t))


async def test_ids_are_consumed_lazily(client: aiorunlist.Client, server: FakeServer) -> None:
    tids = server.seed(200, 2)
    pulled = 0

    def ids() -> Iterator[str]:
        nonlocal pulled
        for tid in tids:
            pulled += 1
            yield tid

    async with client.runs_many(ids(), concurrency=4) as stream:
        async for _ in stream:
            break
    assert pulled <= 4 + 4 + 2  # workers plus what the buffer can hold, not 200


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_concurrency_bound_seen_by_the_server(server: FakeServer, concurrency: int) -> None:
    tids = server.seed(24, 3)
    server.add_fault(Fault(delay=0.03, times=1000))
    async with (
        aiorunlist.Client("sk-test-key-0123456789", base_url=server.base_url) as client,
        client.runs_many(tids, concurrency=concurrency) as stream,
    ):
        count = sum([1 async for _ in stream])
    assert count == 72
    assert server.max_in_flight == concurrency


async def test_slow_consumer_pauses_producers(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(100, 20)
    async with client.runs_many(tids, concurrency=4, page_size=5) as stream:
        await stream.__anext__()
        await anyio.sleep(0.3)
        sent = len(server.requests)
        await anyio.sleep(0.2)
        assert len(server.requests) == sent  # nobody is fetching: they wait for the consumer
    assert sent <= 4 + 1  # each worker holds one page, the consumer reads one


async def test_raise_mode_propagates_the_failing_threads_own_error(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(10, 5)
    tids.insert(3, "thread_missing")
    before = other_tasks()
    with pytest.raises(aiorunlist.NotFoundError) as info:
        async with client.runs_many(tids, concurrency=2) as stream:
            async for _ in stream:
                pass
    assert info.value.thread_id == "thread_missing"
    assert other_tasks() <= before
    assert len(await _all(client, tids[:2])) == 10  # client still usable


async def test_collect_mode_keeps_going(client: aiorunlist.Client, server: FakeServer) -> None:
    tids = server.seed(10, 5)
    server.add_fault(Fault(status=403, thread_id=tids[4]))
    ids = [*tids[:2], "thread_missing", "", *tids[2:]]
    async with client.runs_many(ids, concurrency=3, on_error="collect") as stream:
        got = [run.id async for run in stream]
    assert set(stream.failures) == {"thread_missing", "", tids[4]}
    assert isinstance(stream.failures["thread_missing"], aiorunlist.NotFoundError)
    assert isinstance(stream.failures[tids[4]], aiorunlist.PermissionDeniedError)
    assert isinstance(stream.failures[""], ValueError)
    assert len(got) == 45
    assert stream.threads_done == 9


async def test_failing_id_iterable_is_raised(client: aiorunlist.Client, server: FakeServer) -> None:
    tids = server.seed(3, 2)

    def ids() -> Iterator[str]:
        yield from tids
        raise RuntimeError("the id source broke")

    with pytest.raises(RuntimeError, match="id source broke"):
        async with client.runs_many(ids(), on_error="collect") as stream:
            async for _ in stream:
                pass


@pytest.mark.parametrize("how", ["break", "exception", "timeout"])
async def test_leaving_early_cancels_everything(
    client: aiorunlist.Client, server: FakeServer, how: str
) -> None:
    tids = server.seed(50, 30)
    server.add_fault(Fault(delay=0.05, times=40))
    before = other_tasks()
    if how == "break":
        async with client.runs_many(tids, concurrency=8, page_size=5) as stream:
            async for _ in stream:
                break
    elif how == "exception":
        with pytest.raises(KeyError):
            async with client.runs_many(tids, concurrency=8, page_size=5) as stream:
                async for _ in stream:
                    raise KeyError("consumer failed")
    else:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.1):
                async with client.runs_many(tids, concurrency=8, page_size=5) as stream:
                    async for _ in stream:
                        await anyio.sleep(1)
    await anyio.sleep(0.01)
    assert other_tasks() <= before
    assert client._session is not None
    connector = client._session.connector
    assert connector is not None
    assert not connector._acquired
    gc.collect()
    server.reset_stats()
    assert len(await _all(client, tids[:3])) == 90


async def test_bad_arguments(client: aiorunlist.Client) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        client.runs_many(["t"], concurrency=0)
    with pytest.raises(ValueError, match="on_error"):
        client.runs_many(["t"], on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page_size"):
        client.runs_many(["t"], page_size=500)
    with pytest.raises(TypeError, match="single string"):
        client.runs_many("thread_1")


async def _all(client: aiorunlist.Client, tids: list[str]) -> list[aiorunlist.Run]:
    async with client.runs_many(tids) as stream:
        return [run async for run in stream]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(0, 25), min_size=0, max_size=12),
    concurrency=st.integers(1, 6),
    page_size=st.integers(1, 10),
    order=st.sampled_from(["asc", "desc"]),
    fault_rate=st.sampled_from([0.0, 0.15]),
)
async def test_fanout_property(
    client: aiorunlist.Client,
    server: FakeServer,
    sizes: list[int],
    concurrency: int,
    page_size: int,
    order: str,
    fault_rate: float,
) -> None:
    server.chaos(fault_rate, seed=len(sizes), kinds=("429", "500", "drop", "truncate"))
    example = next(_examples)  # object ids repeat across examples; a counter does not
    tids = [f"thread_f{example}_{i}_{n}" for i, n in enumerate(sizes)]
    for tid, n in zip(tids, sizes, strict=True):
        server.add_thread(tid, make_runs(tid, n))
    by_thread: dict[str, list[str | None]] = defaultdict(list)
    async with client.runs_many(
        tids,
        concurrency=concurrency,
        page_size=page_size,
        order=order,  # type: ignore[arg-type]
        on_error="collect",
    ) as stream:
        async for run in stream:
            assert run.thread_id is not None
            by_thread[run.thread_id].append(run.id)
    server.chaos(0)
    for tid in tids:
        if tid in stream.failures:
            continue
        assert by_thread.get(tid, []) == server.expected_ids(tid, order)
    # With two retries per page, a failed thread needs three faults in a row.
    assert len(stream.failures) <= len(tids)


def test_event_loop_reuse_is_refused() -> None:
    async def main(client: aiorunlist.Client, url: str) -> None:
        async with FakeServer(api_key="k") as srv:
            srv.add_thread("t", [])
            client.base_url = srv.base_url
            await client.list_page("t")

    client = aiorunlist.Client("k", base_url="http://127.0.0.1:1/v1")
    asyncio.run(main(client, ""))
    with pytest.raises(aiorunlist.RunListError, match="another event loop"):
        asyncio.run(main(client, ""))
    asyncio.run(client.aclose())


async def test_stream_used_after_the_block_says_so(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(2, 3)
    async with client.runs_many(tids) as stream:
        await stream.__anext__()
    with pytest.raises(aiorunlist.RunListError, match="inside its `async with"):
        await stream.__anext__()


async def test_async_id_source_is_left_to_its_owner(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(50, 3)
    closed = False

    async def ids() -> AsyncIterator[str]:
        nonlocal closed
        try:
            for tid in tids:
                yield tid
        finally:
            closed = True

    source = ids()
    async with client.runs_many(source, concurrency=2) as stream:
        async for _ in stream:
            break
    # Only the caller's own generator may finish the source; aiorunlist closed its wrapper.
    assert not closed
    await source.aclose()  # type: ignore[attr-defined]
    assert closed


async def test_pages_many_reports_thread_ends_and_errors(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(6, lambda i: i * 4, seed=5)
    server.add_fault(Fault(status=500, times=3, thread_id=tids[5]))
    items = [*tids, "thread_missing"]
    pages: dict[str, list[aiorunlist.ThreadPage]] = defaultdict(list)
    async with client.pages_many(items, concurrency=3, page_size=3, on_error="collect") as stream:
        async for page in stream:
            assert not pages[page.thread_id] or not pages[page.thread_id][-1].last
            pages[page.thread_id].append(page)
    for tid in tids[:5]:
        got = [r.id for p in pages[tid] for r in p.runs]
        assert got == server.expected_ids(tid)
        # ``raw`` is each run as served, key order included, one per typed run.
        raw = [r for p in pages[tid] for r in p.raw]
        assert [aiorunlist.unstructure(r) for p in pages[tid] for r in p.runs] == raw
        served = {r["id"]: r for r in server.threads[tid]}
        assert [list(r) for r in raw] == [list(served[r["id"]]) for r in raw]
        assert pages[tid][-1].last
        assert all(not p.last for p in pages[tid][:-1])
        assert all(p.error is None for p in pages[tid])
    for failed in (tids[5], "thread_missing"):
        assert pages[failed][-1].last
        assert pages[failed][-1].error is stream.failures[failed]
    assert stream.threads_done == 5


async def test_pages_many_raw_keeps_the_servers_key_order(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    runs = [dict(reversed(make_runs("thread_k", 1)[0].items()))]
    runs[0]["zz_unknown"] = {"b": 1, "a": 2}
    server.add_thread("thread_k", runs)
    async with client.pages_many(["thread_k"]) as stream:
        pages = [page async for page in stream]
    assert [list(r) for p in pages for r in p.raw] == [list(runs[0])]
    assert pages[0].raw[0]["zz_unknown"] == {"b": 1, "a": 2}
    assert list(pages[0].raw[0]["zz_unknown"]) == ["b", "a"]


async def test_thread_start_resumes_from_a_cursor(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    a, b, c = server.seed(3, 20)
    ids_a, ids_b = server.expected_ids(a), server.expected_ids(b)
    starts: list[str | aiorunlist.ThreadStart] = [
        aiorunlist.ThreadStart(a, after=ids_a[7]),
        aiorunlist.ThreadStart(b, before=ids_b[5]),
        c,
    ]
    by_thread: dict[str, list[str | None]] = defaultdict(list)
    async with client.runs_many(starts, page_size=4) as stream:
        async for run in stream:
            by_thread[str(run.thread_id)].append(run.id)
    assert by_thread[a] == ids_a[8:]
    assert by_thread[b] == list(reversed(ids_b[:5]))
    assert by_thread[c] == server.expected_ids(c)
    with pytest.raises(ValueError, match="after must be a run id"):
        async with client.runs_many([aiorunlist.ThreadStart(a, after="")]) as stream:
            async for _ in stream:
                pass


@pytest.mark.parametrize("on_error", ["raise", "collect"])
async def test_none_among_the_ids_is_an_error_not_the_end(
    client: aiorunlist.Client, server: FakeServer, on_error: str
) -> None:
    a, b, c = server.seed(3, 2)
    ids: list[str | None] = [a, None, b, c]
    if on_error == "raise":
        with pytest.raises(TypeError, match="thread_id must be a string"):
            async with client.runs_many(ids, concurrency=1) as stream:  # type: ignore[arg-type]
                async for _ in stream:
                    pass
        return
    async with client.runs_many(ids, concurrency=1, on_error="collect") as stream:  # type: ignore[arg-type]
        got = {str(run.thread_id) async for run in stream}
    assert got == {a, b, c}
    assert isinstance(stream.failures["None"], TypeError)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_base_exceptions_from_the_block_come_out_as_themselves(
    client: aiorunlist.Client, server: FakeServer, exc_type: type[BaseException]
) -> None:
    tids = server.seed(10, 5)
    before = other_tasks()
    with pytest.raises(exc_type):
        async with client.runs_many(tids, concurrency=3) as stream:
            async for _ in stream:
                raise exc_type
    assert other_tasks() <= before


async def test_generator_wrapper_closed_early(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    tids = server.seed(10, 5)

    async def all_runs() -> AsyncIterator[aiorunlist.Run]:
        async with client.runs_many(tids) as stream:
            async for run in stream:
                yield run

    async with aclosing(all_runs()) as runs:  # type: ignore[type-var]
        async for _ in runs:
            break  # GeneratorExit travels through the fan-out and must come out as itself


async def test_raised_thread_error_keeps_its_cause(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    (tid,) = server.seed(1, 3)
    server.add_fault(Fault(drop=True, times=100))
    with pytest.raises(aiorunlist.APIConnectionError) as info:
        async with client.runs_many([tid]) as stream:
            async for _ in stream:
                pass
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


@pytest.mark.parametrize("mode", ["runs", "pages"])
async def test_malformed_run_fails_its_thread_after_a_clean_prefix(
    client: aiorunlist.Client, server: FakeServer, mode: str
) -> None:
    good = server.seed(4, 6)
    bad_runs = make_runs("thread_bad", 6)
    bad_runs[1] = {**bad_runs[1], "status": 5}  # oldest-but-one: on the second page, desc
    server.add_thread("thread_bad", bad_runs)
    listing = server.expected_ids("thread_bad")
    # runs_many types each run as it hands it out: every run before the bad one arrives;
    # pages_many types whole pages: the pages before the bad one's page arrive.
    bad_at = listing.index(bad_runs[1]["id"])
    expected_prefix = listing[:bad_at] if mode == "runs" else listing[: bad_at - bad_at % 3]
    got: dict[str, list[str | None]] = defaultdict(list)
    if mode == "runs":
        async with client.runs_many(
            [*good, "thread_bad"], page_size=3, on_error="collect"
        ) as stream:
            async for run in stream:
                got[str(run.thread_id)].append(run.id)
    else:
        async with client.pages_many(
            [*good, "thread_bad"], page_size=3, on_error="collect"
        ) as pages:
            async for page in pages:
                got[page.thread_id].extend(r.id for r in page.runs)
                if page.thread_id == "thread_bad" and page.last:
                    assert isinstance(page.error, aiorunlist.APIResponseValidationError)
        stream = pages  # type: ignore[assignment]
    err = stream.failures["thread_bad"]
    assert isinstance(err, aiorunlist.APIResponseValidationError)
    assert not err.retryable
    assert got["thread_bad"] == expected_prefix
    for tid in good:
        assert got[tid] == server.expected_ids(tid)
    assert stream.threads_done == 4
    with pytest.raises(aiorunlist.APIResponseValidationError, match="not a list of runs"):
        async with client.runs_many(["thread_bad"], page_size=3) as stream:
            async for _ in stream:
                pass


async def test_pages_checked_by_the_consumer_before_anything_is_handed_out(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    """The consumer decodes each page: a repeated cursor fails the thread before delivery,
    a non-JSON page is retried by its worker, and a thread dropped after a malformed run
    stops fetching, keeping its first error."""
    good = server.seed(3, 9)
    server.add_thread("thread_loop", [])
    loop_page = orjson.dumps(
        {"object": "list", "data": [{"id": "run_a"}, {"id": "run_b"}], "has_more": True}
    )
    server.add_fault(Fault(body=loop_page, thread_id="thread_loop", times=5))
    server.add_fault(Fault(not_json=True, thread_id=good[0]))
    long_runs = make_runs("thread_long", 12)
    long_runs[-4] = {**long_runs[-4], "status": 5}  # desc, pages of 3: on the 2nd page
    server.add_thread("thread_long", long_runs)
    got: dict[str, list[str | None]] = defaultdict(list)
    async with client.runs_many(
        [*good, "thread_loop", "thread_long"], page_size=3, concurrency=2, on_error="collect"
    ) as stream:
        async for run in stream:
            got[str(run.thread_id) if run.thread_id else "thread_loop"].append(run.id)
    assert got["thread_loop"] == ["run_a", "run_b"]  # once: the repeat was refused
    assert isinstance(stream.failures["thread_loop"], aiorunlist.PaginationError)
    for tid in good:
        assert got[tid] == server.expected_ids(tid)
    not_json = [r for r in server.requests if r.fault is not None and r.fault.not_json]
    assert [r.thread_id for r in not_json] == [good[0]]  # and good[0] still came out whole
    long_ids = server.expected_ids("thread_long")
    assert got["thread_long"] == long_ids[:3]  # the bad run was the 4th
    assert isinstance(stream.failures["thread_long"], aiorunlist.APIResponseValidationError)
    asked = [r for r in server.requests if r.thread_id == "thread_long"]
    assert len(asked) <= 3  # stopped soon after the consumer dropped the thread


async def test_cancelled_anext_loses_nothing_and_hangs_nothing(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    """asyncio cancels a receive even after its item arrived; the item must not be lost."""
    import random

    tids = server.seed(40, 7)
    rng = random.Random(3)
    got: list[str | None] = []
    with anyio.fail_after(30):
        async with client.runs_many(tids, concurrency=8, page_size=2) as stream:
            while True:
                try:
                    run = await asyncio.wait_for(stream.__anext__(), rng.random() / 1000)
                except asyncio.TimeoutError:
                    continue
                except StopAsyncIteration:
                    break
                got.append(run.id)
    expected = [i for t in tids for i in server.expected_ids(t)]
    assert sorted(map(str, got)) == sorted(expected)


async def test_waiting_on_a_slow_consumer_does_not_use_up_page_timeout(
    server: FakeServer,
) -> None:
    (tid,) = server.seed(1, 4)
    server.add_fault(Fault(not_json=True))  # the first page: retried after waiting
    async with (
        fast_client(server.base_url, page_timeout=0.5) as client,
        client.runs_many([tid], page_size=2, on_error="collect") as stream,
    ):
        got = []
        async for run in stream:
            got.append(run.id)
            await anyio.sleep(0.3)
    assert stream.failures == {}
    assert got == server.expected_ids(tid)


async def test_refused_pages_still_count_as_answered(server: FakeServer) -> None:
    server.add_thread("thread_loop", [])
    page = orjson.dumps({"object": "list", "data": [{"id": "run_a"}], "has_more": True})
    limits = {"x-ratelimit-remaining-requests": "7", "x-ratelimit-reset-requests": "1s"}
    server.add_fault(Fault(body=page, headers=limits, thread_id="thread_loop"))
    server.add_fault(Fault(not_json=True, thread_id="thread_loop"))
    server.add_fault(Fault(body=page, headers=limits, thread_id="thread_loop"))
    async with fast_client(server.base_url, retry_budget=20) as client:
        async with client.runs_many(["thread_loop"], on_error="collect") as stream:
            assert [run.id async for run in stream] == ["run_a"]
        assert isinstance(stream.failures["thread_loop"], aiorunlist.PaginationError)
        assert budget_of(client).available == 20  # the retry's tokens came back
        assert client.rate_limit is not None
        assert client.rate_limit.remaining_requests == 7
