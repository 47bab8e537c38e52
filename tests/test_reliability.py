"""Reliability under faults and load, over real HTTP on 127.0.0.1.

Chaos, outage, shared pause, pacing, total page deadline, redirects.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web

import aiorunlist
from aiorunlist.testing import FakeServer, Fault
from tests.conftest import API_KEY, budget_of, fast_client, other_tasks, pacer_of

pytestmark = pytest.mark.anyio


def make_client(server: FakeServer, **kwargs: Any) -> aiorunlist.Client:
    return fast_client(server.base_url, **kwargs)


@pytest.mark.parametrize(("rate", "seed"), [(0.15, 1), (0.3, 2)])
async def test_chaos_every_run_once_or_thread_failed(
    server: FakeServer, rate: float, seed: int
) -> None:
    tids = server.seed(300, lambda i: i % 17, seed=seed)
    server.chaos(rate, seed=seed, slow_delay=0.02)
    before = other_tasks()
    delivered: dict[str, list[str | None]] = defaultdict(list)
    async with (
        make_client(server, max_retries=4, timeout=2) as client,
        client.runs_many(tids, concurrency=24, page_size=5, on_error="collect") as stream,
    ):
        async for run in stream:
            assert run.thread_id is not None
            delivered[run.thread_id].append(run.id)
    faults = Counter(r.fault.kind for r in server.requests if r.fault is not None)
    assert sum(faults.values()) > 0.5 * rate * len(server.requests)
    for tid in tids:
        got = delivered.get(tid, [])
        assert len(got) == len(set(got)), f"duplicate runs in {tid}"
        if tid in stream.failures:
            expected = server.expected_ids(tid)
            assert got == expected[: len(got)]  # what came, came once and in order
        else:
            assert got == server.expected_ids(tid)
    # Four retries per page: a thread fails only on five faults in a row.
    assert len(stream.failures) <= 0.02 * len(tids) + 1
    assert other_tasks() <= before


async def test_outage_traffic_is_bounded_by_the_budget(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    tids = server.seed(200, 3)
    server.add_fault(Fault(status=503, times=10_000))
    async with (
        make_client(server, max_retries=3, retry_budget=50) as client,
        client.runs_many(tids, concurrency=8, on_error="collect") as stream,
    ):
        async for _ in stream:
            pass
    assert len(stream.failures) == 200
    # 200 first attempts, and the budget pays for 50 / 5 = 10 retries, not 200 * 3 = 600.
    assert len(server.requests) <= 200 + 10
    messages = [str(e) for e in stream.failures.values()]
    assert any("retry budget is spent" in m for m in messages)
    assert all("HTTP 503" in m for m in messages)
    assert "retry budget is spent" in caplog.text


async def test_budget_refills_after_the_outage(server: FakeServer) -> None:
    (tid,) = server.seed(1, 3)
    async with make_client(server, max_retries=1, retry_budget=10) as client:
        server.add_fault(Fault(status=500, times=4))
        for _ in range(2):
            with pytest.raises(aiorunlist.InternalServerError):
                await client.list_page(tid)
        assert budget_of(client).available == 0
        for _ in range(5):
            await client.list_page(tid)  # clean successes refill
        assert budget_of(client).available == 5
        server.add_fault(Fault(status=500))
        await client.list_page(tid)  # a retry is affordable again
        assert client.retries == 3


async def test_retry_after_pauses_every_worker(server: FakeServer) -> None:
    tids = server.seed(12, 30)
    server.add_fault(Fault(status=429, headers={"retry-after-ms": "400"}, thread_id=tids[0]))
    async with (
        make_client(server) as client,
        client.runs_many(tids, concurrency=4, page_size=5) as stream,
    ):
        count = sum([1 async for _ in stream])
    assert count == 360
    throttled = next(r for r in server.requests if r.status == 429)
    after = [r.received_at - throttled.received_at for r in server.requests]
    # Requests already on the wire may land just after; then nobody sends for the pause.
    quiet = [t for t in after if 0.05 < t < 0.35]
    assert quiet == []
    assert any(t >= 0.39 for t in after)


async def test_fixed_pacing(server: FakeServer) -> None:
    tids = server.seed(10, 1)
    async with (
        make_client(server, pacing=aiorunlist.Pacing(requests_per_second=25)) as client,
        client.runs_many(tids, concurrency=10) as stream,
    ):
        assert sum([1 async for _ in stream]) == 10
    times = sorted(r.received_at for r in server.requests)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.03  # 25 per second: one every 40 ms, though 10 could go at once
    assert times[-1] - times[0] >= 0.9 * 9 / 25


async def test_adaptive_pacing_slows_down_after_429s(server: FakeServer) -> None:
    tids = server.seed(16, 1)
    server.add_fault(Fault(status=429, headers={"retry-after-ms": "1"}, times=3))
    async with make_client(
        server, pacing=aiorunlist.Pacing(adaptive=True), max_retries=5
    ) as client:
        async with client.runs_many(tids, concurrency=8) as stream:
            assert sum([1 async for _ in stream]) == 16
        pacer = pacer_of(client)
        assert pacer.throttles == 3
        # It slowed down for them (the rate it learned may since have grown back to unpaced).
        assert pacer.last_decrease != float("-inf")


async def test_page_timeout_caps_retries_and_sleeps(server: FakeServer) -> None:
    server.add_thread("thread_slow", [])
    server.add_fault(Fault(delay=0.3, status=500, times=100))
    async with make_client(server, max_retries=10, page_timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(aiorunlist.APIConnectionError, match="page_timeout"):
            await client.list_page("thread_slow")
        assert time.monotonic() - started < 1.0
        server.clear_faults()
        server.add_fault(Fault(status=429, headers={"retry-after": "20"}))
        started = time.monotonic()
        with pytest.raises(aiorunlist.RateLimitError, match=r"page_timeout=0\.5s would pass"):
            await client.list_page("thread_slow")
        assert time.monotonic() - started < 0.4  # did not sleep towards 20 s


async def test_page_timeout_within_one_slow_request(server: FakeServer) -> None:
    server.add_thread("thread_slow", [])
    server.add_fault(Fault(delay=5))
    async with make_client(server, max_retries=0, page_timeout=0.3) as client:
        with pytest.raises(aiorunlist.APITimeoutError, match="page_timeout"):
            await client.list_page("thread_slow")


@asynccontextmanager
async def serve(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A one-route aiohttp server of the test's own on 127.0.0.1; yields its root URL."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def redirector(server: FakeServer) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A server that redirects same-origin to itself and cross-origin to the fake server."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        if request.path.startswith("/same/"):
            raise web.HTTPTemporaryRedirect(str(request.url.with_path("/v2" + request.path[5:])))
        if request.path.startswith("/v2/"):
            return web.json_response({"object": "list", "data": [], "has_more": False})
        target = server.base_url + request.path_qs.removeprefix("/v1")
        raise web.HTTPFound(target)

    async with serve(handle) as url:
        yield url, seen


async def test_no_key_to_another_origin(
    server: FakeServer, redirector: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = redirector
    server.add_thread("thread_r", [])
    async with aiorunlist.Client(API_KEY, base_url=url + "/v1", max_retries=3) as client:
        with pytest.raises(aiorunlist.APIConnectionError, match="another origin") as info:
            await client.list_page("thread_r")
    assert not info.value.retryable
    assert len(seen) == 1  # refused once, not retried
    assert server.requests == []  # the other origin never saw the request, nor the key
    async with aiorunlist.Client(API_KEY, base_url=url + "/same") as client:
        page = await client.list_page("thread_r")
    assert page.data == ()
    assert seen[-1]["Authorization"] == f"Bearer {API_KEY}"  # same origin: followed


async def test_retries_and_errors_are_logged_with_context(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiorunlist")
    (tid,) = server.seed(1, 2)
    server.add_fault(Fault(status=500, thread_id=tid))
    async with make_client(server) as client:
        await client.list_page(tid)
    retry = next(r for r in caplog.records if r.getMessage().startswith("retrying"))
    assert retry.thread_id == tid  # type: ignore[attr-defined]
    assert retry.attempt == 1  # type: ignore[attr-defined]
    assert retry.request_id is not None  # type: ignore[attr-defined]
    assert retry.request_id in retry.getMessage()  # type: ignore[attr-defined]
    assert API_KEY not in caplog.text


async def test_slow_consumer_memory_stays_bounded(server: FakeServer) -> None:
    tids = server.seed(200, 50)
    async with (
        make_client(server) as client,
        client.runs_many(tids, concurrency=8, page_size=10) as stream,
    ):
        for _ in range(3):
            await stream.__anext__()
            await anyio.sleep(0.1)
        # 8 workers each holding a page, one being read: 9 pages at most.
        assert len(server.requests) <= 9


async def test_load_ten_thousand_threads(server: FakeServer) -> None:
    """10,000 threads, pages of one run, 64 at a time: completes, and holds little at once."""
    tids = server.seed(10_000, 2)
    concurrency = 64
    seen = 0
    most_held = 0
    async with (
        make_client(server) as client,
        client.runs_many(tids, concurrency=concurrency, page_size=1) as stream,
    ):
        async for _ in stream:
            seen += 1
            # Every request fetches one run: requests sent minus runs handed out is what the
            # client holds (in flight, in workers' hands, buffered).
            most_held = max(most_held, len(server.requests) - seen)
    assert seen == 20_000
    assert len(server.requests) == 20_000
    assert stream.threads_done == 10_000
    assert most_held <= concurrency + 1


async def test_rate_limit_headers_are_exposed(server: FakeServer) -> None:
    (tid,) = server.seed(1, 3)
    limits = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    async with make_client(server, max_retries=0) as client:
        before = client.rate_limit
        assert before is None
        server.add_fault(Fault(headers=limits))
        await client.list_page(tid)
        info = client.rate_limit
        assert info is not None
        assert (info.limit_requests, info.remaining_requests) == (500, 499)
        assert info.reset_requests == pytest.approx(0.12)
        assert info.reset_tokens == 360.0
        assert info.remaining_tokens == 29000
        server.add_fault(
            Fault(status=429, headers={**limits, "x-ratelimit-remaining-requests": "0"})
        )
        with pytest.raises(aiorunlist.RateLimitError) as err:
            await client.list_page(tid)
        assert err.value.headers["x-ratelimit-remaining-requests"] == "0"
        assert client.rate_limit is not None
        assert client.rate_limit.remaining_requests == 0


async def test_cancelled_waiters_leave_no_pacing_slots_behind(server: FakeServer) -> None:
    tids = server.seed(40, 1)
    async with make_client(server, pacing=aiorunlist.Pacing(requests_per_second=10)) as client:
        async with client.runs_many(tids, concurrency=20) as stream:
            async for _ in stream:
                break  # 19 workers were waiting for their slots
        started = time.monotonic()
        await client.list_page(tids[0])
        assert time.monotonic() - started < 0.3  # one slot of 0.1 s at most, not 1.9 s


async def test_a_retry_that_never_happens_costs_no_budget(server: FakeServer) -> None:
    server.add_thread("thread_b", [])
    async with make_client(
        server, retry_budget=50, page_timeout=0.2, initial_retry_delay=1, max_retry_delay=1
    ) as client:
        for _ in range(3):
            server.add_fault(Fault(status=500))
            with pytest.raises(aiorunlist.InternalServerError, match="page_timeout"):
                await client.list_page("thread_b")
        assert budget_of(client).available == 50
        assert client.retries == 0
    async with make_client(
        server, retry_budget=50, initial_retry_delay=1, max_retry_delay=1
    ) as client:
        server.add_fault(Fault(status=500))
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.list_page, "thread_b")
            await anyio.sleep(0.1)  # it is now sleeping before its retry
            assert budget_of(client).available == 45
            tg.cancel_scope.cancel()
        budget = budget_of(client)
        assert budget is not None
        assert budget.available == 50  # the cancelled retry gave its tokens back


async def test_wrong_shapes_and_refused_redirects_are_not_retried(server: FakeServer) -> None:
    server.add_thread("thread_w", [])
    server.add_fault(Fault(body=b'{"object": "list", "data": {}}', times=5))
    async with make_client(server, max_retries=3) as client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="not a list of runs"):
            await client.list_page("thread_w")
    assert len(server.requests) == 1  # the same server would send the same thing again


async def test_long_retry_after_is_ignored_consistently(server: FakeServer) -> None:
    (tid,) = server.seed(1, 2)
    server.add_fault(Fault(status=429, headers={"retry-after": "3600"}))
    async with make_client(server, page_timeout=5) as client:
        page = await client.list_page(tid)  # backed off briefly, not paused for an hour
    assert len(page.data) == 2


async def test_closing_the_client_during_a_retry_says_so(server: FakeServer) -> None:
    server.add_thread("thread_c", [])
    server.add_fault(Fault(status=500))
    client = make_client(server, initial_retry_delay=0.2, max_retry_delay=0.2)
    async with anyio.create_task_group() as tg:

        async def close_soon() -> None:
            await anyio.sleep(0.05)
            await client.aclose()

        tg.start_soon(close_soon)
        with pytest.raises(aiorunlist.RunListError, match="closed"):
            await client.list_page("thread_c")


@pytest.fixture
async def gzip_bomb() -> AsyncIterator[str]:
    """A server answering with 20 KB of gzip that inflates to 20 MB."""
    import gzip

    payload = gzip.compress(b"[" + b" " * 20_000_000 + b"]")

    async def handle(request: web.Request) -> web.Response:
        return web.Response(
            body=payload,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async with serve(handle) as url:
        yield url + "/v1"


async def test_size_cap_counts_decompressed_bytes(gzip_bomb: str) -> None:
    async with aiorunlist.Client(
        API_KEY, base_url=gzip_bomb, max_response_bytes=1_000_000, max_retries=0
    ) as client:
        with pytest.raises(aiorunlist.ResponseTooLargeError):
            await client.list_page("thread_x")
