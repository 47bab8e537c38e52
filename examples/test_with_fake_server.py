"""Testing your own code with aiorunlist.testing: a pytest module to copy.

``FakeServer`` is a real HTTP server on 127.0.0.1 that serves ``GET /v1/threads/{id}/runs``
like the Assistants API v2; ``Fault`` and ``chaos`` make it misbehave on demand, and
``server.requests`` records what your code sent. The tests below use the anyio pytest plugin
(installed with anyio, which aiorunlist depends on); pytest-asyncio works the same way.

    python -m pytest examples/test_with_fake_server.py
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

import aiorunlist
from aiorunlist.testing import FakeServer, Fault, make_run

pytestmark = pytest.mark.anyio


# --- the code under test: yours ------------------------------------------------------------------


async def tokens_per_thread(
    client: aiorunlist.Client, thread_ids: Iterable[str]
) -> tuple[dict[str, int], set[str]]:
    """Total tokens of each thread's completed runs, and the threads that could not be listed."""
    totals: dict[str, int] = {}
    async with client.runs_many(thread_ids, concurrency=8, on_error="collect") as stream:
        async for run in stream:
            assert run.thread_id is not None
            totals.setdefault(run.thread_id, 0)
            if run.status == "completed" and run.usage and run.usage.total_tokens:
                totals[run.thread_id] += run.usage.total_tokens
    return totals, set(stream.failures)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer() as srv:
        yield srv


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[aiorunlist.Client]:
    # Short retry delays keep fault tests fast; the fake server recovers at once.
    async with aiorunlist.Client(
        server.api_key,
        base_url=server.base_url,
        retry=aiorunlist.Retries(max_retries=5, initial_delay=0.001, max_delay=0.01),
    ) as c:
        yield c


# --- tests ---------------------------------------------------------------------------------------


async def test_sums_completed_runs_only(client: aiorunlist.Client, server: FakeServer) -> None:
    # Hand-made runs: make_run builds a realistic run; override what the test is about.
    runs = [make_run("thread_a", i, status="completed") for i in range(3)]
    runs.append(make_run("thread_a", 3, status="failed"))
    server.add_thread("thread_a", runs)
    expected = sum(run["usage"]["total_tokens"] for run in runs[:3])

    totals, failed = await tokens_per_thread(client, ["thread_a"])

    assert totals == {"thread_a": expected}
    assert failed == set()


async def test_pages_through_long_threads(client: aiorunlist.Client, server: FakeServer) -> None:
    thread_ids = server.seed(8, 201)  # 201 runs each: pages of 100, 100 and 1
    totals, _ = await tokens_per_thread(client, thread_ids)
    assert set(totals) == set(thread_ids)
    assert len(server.requests) == 8 * 3


async def test_a_missing_thread_is_reported(client: aiorunlist.Client, server: FakeServer) -> None:
    (thread_id,) = server.seed(1, 5)
    totals, failed = await tokens_per_thread(client, [thread_id, "thread_gone"])
    assert set(totals) == {thread_id}
    assert failed == {"thread_gone"}


async def test_survives_a_rate_limit(client: aiorunlist.Client, server: FakeServer) -> None:
    (thread_id,) = server.seed(1, 5)
    # The next request gets a 429 asking for a 5 ms wait; the client retries it.
    server.add_fault(Fault(status=429, headers={"retry-after-ms": "5"}))

    totals, failed = await tokens_per_thread(client, [thread_id])

    assert set(totals) == {thread_id}
    assert failed == set()
    assert [request.status for request in server.requests] == [429, 200]


async def test_quota_errors_are_not_retried(client: aiorunlist.Client, server: FakeServer) -> None:
    (thread_id,) = server.seed(1, 5)
    server.add_fault(Fault(status=429, error_code="insufficient_quota", thread_id=thread_id))
    with pytest.raises(aiorunlist.QuotaExceededError):
        async for _ in client.runs(thread_id):
            pass
    assert len(server.requests) == 1


async def test_every_run_exactly_once_under_chaos(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    thread_ids = server.seed(50, lambda i: i % 12)
    # 20% of requests fail at random (seeded: the same faults on every run of the test).
    server.chaos(0.2, seed=7, kinds=("429", "500", "503", "drop", "truncate", "not_json"))

    seen: list[str] = []
    async with client.runs_many(thread_ids, concurrency=8, page_size=5) as stream:
        async for run in stream:
            assert run.id is not None
            seen.append(run.id)

    expected = [run_id for tid in thread_ids for run_id in server.expected_ids(tid)]
    assert sorted(seen) == sorted(expected)  # all of them, none twice
    assert any(request.fault is not None for request in server.requests)


async def test_works_with_a_lax_compatible_server() -> None:
    # Some compatible servers leave out first_id/last_id and ignore `limit`.
    async with FakeServer(send_page_ids=False, force_page_size=7) as lax:
        (thread_id,) = lax.seed(1, 30)
        async with aiorunlist.Client(lax.api_key, base_url=lax.base_url) as lax_client:
            totals, failed = await tokens_per_thread(lax_client, [thread_id])
        assert set(totals) == {thread_id}
        assert failed == set()
        assert len(lax.requests) == 5  # 30 runs in pages of 7
