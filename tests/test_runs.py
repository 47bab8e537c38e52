"""One thread: lazy pagination in both directions, with faults, through a MockTransport.

The fake server answers without sockets here (`FakeServer.handle`); the fan-out and load
tests keep the real HTTP tier.
"""

from __future__ import annotations

import itertools
from contextlib import aclosing

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist.testing import FakeServer, Fault, make_run
from tests.conftest import fast_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(socketless_server: FakeServer) -> FakeServer:
    return socketless_server


@pytest.fixture
def client(socketless_client: aiorunlist.Client) -> aiorunlist.Client:
    return socketless_client


_counter = itertools.count()


async def collect(client: aiorunlist.Client, tid: str, **kwargs: object) -> list[str | None]:
    return [run.id async for run in client.runs(tid, **kwargs)]  # type: ignore[arg-type]


async def test_nothing_sent_before_iteration(client: aiorunlist.Client, server: FakeServer) -> None:
    (tid,) = server.seed(1, 250)
    gen = client.runs(tid, page_size=100)
    assert server.requests == []
    async with aclosing(gen):
        taken = []
        async for run in gen:
            taken.append(run)
            if len(taken) == 3:
                break
    assert len(taken) == 3
    assert len(server.requests) == 1


async def test_next_page_only_when_consumed(client: aiorunlist.Client, server: FakeServer) -> None:
    (tid,) = server.seed(1, 250)
    async with aclosing(client.runs(tid, page_size=100)) as gen:
        for _ in range(100):
            await gen.__anext__()
        assert len(server.requests) == 1
        await gen.__anext__()
        assert len(server.requests) == 2


@pytest.mark.parametrize(("n", "size", "requests"), [(0, 10, 1), (200, 100, 2), (201, 100, 3)])
async def test_has_more_is_authoritative(
    client: aiorunlist.Client, server: FakeServer, n: int, size: int, requests: int
) -> None:
    (tid,) = server.seed(1, n)
    assert await collect(client, tid, page_size=size) == server.expected_ids(tid)
    assert len(server.requests) == requests


async def test_after_resumes(client: aiorunlist.Client, server: FakeServer) -> None:
    (tid,) = server.seed(1, 57)
    ids = server.expected_ids(tid, "asc")
    assert await collect(client, tid, order="asc", page_size=10, after=ids[20]) == ids[21:]
    assert server.requests[0].query["after"] == ids[20]


async def test_before_walks_backwards_nearest_first(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    (tid,) = server.seed(1, 57)
    ids = server.expected_ids(tid, "desc")
    got = await collect(client, tid, order="desc", page_size=10, before=ids[40])
    assert got == list(reversed(ids[:40]))
    # Every request after the first moved `before` to the first id of the previous page.
    befores = [r.query["before"] for r in server.requests]
    assert befores[0] == ids[40]
    assert len(befores) == 4
    assert len(set(befores)) == 4


async def test_after_and_before_together_list_the_range(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    (tid,) = server.seed(1, 30)
    ids = server.expected_ids(tid, "asc")
    got = await collect(client, tid, order="asc", page_size=4, after=ids[5], before=ids[20])
    assert got == ids[6:20]


def _page(data: list[dict[str, object]], has_more: bool) -> bytes:
    return orjson.dumps({"object": "list", "data": data, "has_more": has_more})


async def test_empty_page_with_has_more_raises(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    server.add_thread("thread_p", [])
    server.add_fault(Fault(body=_page([], True), times=5))
    with pytest.raises(aiorunlist.PaginationError, match="has_more with an empty page"):
        await collect(client, "thread_p")
    assert len(server.requests) == 1


async def test_cursor_that_does_not_advance_raises(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    server.add_thread("thread_p", [])
    body = _page([{"id": "run_a"}, {"id": "run_b"}], True)
    server.add_fault(Fault(body=body, times=5))
    seen: list[str | None] = []
    with pytest.raises(aiorunlist.PaginationError, match="sent that run again"):
        async for run in client.runs("thread_p"):
            seen.append(run.id)
    assert seen == ["run_a", "run_b"]  # refused before anything was delivered twice
    assert len(server.requests) == 2


async def test_leaving_early_releases_everything(http_server: FakeServer) -> None:
    server = http_server
    (tid,) = server.seed(1, 50)
    client = fast_client(server.base_url)
    async with client, aclosing(client.runs(tid, page_size=10)) as gen:
        async for _ in gen:
            break
        assert server.in_flight == 0
        assert client._session is not None
        connector = client._session.connector
        assert connector is not None
        assert not connector._acquired  # no connection checked out
        assert len(await collect(client, tid)) == 50  # still usable


async def test_bad_arguments_raise_at_call_time(client: aiorunlist.Client) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.runs("t", page_size=0)
    with pytest.raises(ValueError, match="order"):
        client.runs("t", order="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thread_id"):
        client.runs("")


_FAULTS = st.sampled_from(
    [
        Fault(status=500),
        Fault(status=429, headers={"retry-after-ms": "1"}),
        Fault(drop=True),
        Fault(truncate=True),
        Fault(not_json=True),
    ]
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(0, 60) | st.sampled_from([0, 1]),
    page_size=st.integers(1, 25),
    order=st.sampled_from(["asc", "desc"]),
    cursor=st.sampled_from([None, "after", "before"]),
    position=st.floats(0, 1, exclude_max=True),
    faults=st.lists(_FAULTS, max_size=2),
)
async def test_every_run_exactly_once_in_order(
    client: aiorunlist.Client,
    server: FakeServer,
    n: int,
    page_size: int,
    order: str,
    cursor: str | None,
    position: float,
    faults: list[Fault],
) -> None:
    tid = f"thread_prop_{next(_counter)}"
    server.add_thread(tid, [])
    server.add_runs(tid, [_run(tid, i) for i in range(n)])
    expected = server.expected_ids(tid, order)
    kwargs: dict[str, object] = {"order": order, "page_size": page_size}
    if cursor is not None and expected:
        at = int(position * len(expected))
        kwargs[cursor] = expected[at]
        expected = expected[at + 1 :] if cursor == "after" else list(reversed(expected[:at]))
    for fault in faults:  # at most max_retries faults in a row: every page still arrives
        server.add_fault(attrs.evolve(fault, thread_id=tid))
    got = await collect(client, tid, **kwargs)
    assert got == expected
    assert len(set(got)) == len(got)


def _run(tid: str, i: int) -> dict[str, object]:
    return make_run(tid, i, created_at=1_700_000_000 + i)


async def test_a_cursor_cycle_never_hands_a_run_out_twice(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    server.add_thread("thread_c", [])
    a = _page([{"id": "run_a1"}, {"id": "run_a2"}], True)
    b = _page([{"id": "run_b1"}, {"id": "run_b2"}], True)
    for body in (a, b, a):  # A -> B -> A: the server's cursor went back
        server.add_fault(Fault(body=body, thread_id="thread_c"))
    seen: list[str | None] = []
    with pytest.raises(aiorunlist.PaginationError):
        async for run in client.runs("thread_c"):
            seen.append(run.id)
    assert seen == ["run_a1", "run_a2", "run_b1", "run_b2"]


async def test_a_backward_cycle_never_hands_a_run_out_twice(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    server.add_thread("thread_c", [])
    # Backwards, pages come nearest-first reversed: D C, then B A, then D C again.
    cd = _page([{"id": "run_c"}, {"id": "run_d"}], True)
    ab = _page([{"id": "run_a"}, {"id": "run_b"}], True)
    for body in (cd, ab, cd):
        server.add_fault(Fault(body=body, thread_id="thread_c"))
    seen: list[str | None] = []
    with pytest.raises(aiorunlist.PaginationError):
        async for run in client.runs("thread_c", before="run_e"):
            seen.append(run.id)
    assert seen == ["run_d", "run_c", "run_b", "run_a"]
