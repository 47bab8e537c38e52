"""The transport seam and the client's request path, socket-free through MockTransport.

Redirects, retries, decoding, key masking and settings are the client's own, so they are
tested here without a network; what only aiohttp does (sessions, the body cap over a real
stream, malformed responses) is tested over 127.0.0.1 at the end.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anyio
import orjson
import pytest

import aiorunlist
from aiorunlist import Request
from aiorunlist.testing import FakeServer, MockResponse, MockTransport, make_runs
from tests.conftest import API_KEY, SOCKETLESS_URL, fast_client, pacer_of

pytestmark = pytest.mark.anyio


def _page(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more}


def mock_client(handler: Any, **kwargs: Any) -> aiorunlist.Client:
    return fast_client(SOCKETLESS_URL, transport=MockTransport(handler), **kwargs)


# --- MockTransport itself -----------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_handler_sync_or_async_sees_the_request(asynchronous: bool) -> None:
    runs = make_runs("thread_1", 3)
    seen: list[Request] = []

    def answer(request: Request) -> MockResponse:
        seen.append(request)
        return MockResponse(200, body=_page(runs), headers={"X-Request-Id": "req_1"})

    async def answer_async(request: Request) -> MockResponse:
        await anyio.lowlevel.checkpoint()
        return answer(request)

    async with mock_client(answer_async if asynchronous else answer) as client:
        page = await client.list_page("thread_1", limit=5, order="asc", after="run_x")
    assert [r.id for r in page.data] == [r["id"] for r in runs]
    assert page.request_id == "req_1"  # headers are case-insensitive, as on the wire
    (request,) = seen
    assert request.method == "GET"
    assert request.url == f"{SOCKETLESS_URL}/threads/thread_1/runs?limit=5&order=asc&after=run_x"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["OpenAI-Beta"] == "assistants=v2"
    assert request.thread_id == "thread_1"
    assert API_KEY not in repr(request)


@pytest.mark.parametrize(
    ("body", "sent"),
    [(b'{"a": 1}', b'{"a": 1}'), ("é", "é".encode()), ({"a": [1]}, b'{"a":[1]}')],
)
def test_mock_response_bodies(body: object, sent: bytes) -> None:
    assert MockResponse(200, body=body).body == sent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "status must be"),
        ({"status": True}, "status"),
        ({"failure": "x"}, "failure"),
    ],
)
def test_mock_response_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockResponse(**kwargs)


async def test_handler_must_answer_with_a_mock_response() -> None:
    async with mock_client(lambda request: {"data": []}) as client:
        with pytest.raises(TypeError, match="MockResponse"):
            await client.list_page("thread_1")


@pytest.mark.parametrize(
    ("failure", "cls", "text"),
    [
        (MockResponse.drop(), aiorunlist.APIConnectionError, "closed before an answer"),
        (MockResponse.cut(200, body=b'{"obj'), aiorunlist.APIConnectionError, "cut short"),
        (MockResponse.timeout(), aiorunlist.APITimeoutError, "timed out"),
    ],
)
async def test_network_failures_are_retried_then_raised(
    failure: MockResponse, cls: type[aiorunlist.RunListError], text: str
) -> None:
    answers = iter([failure, failure, MockResponse(200, body=_page([]))])
    transport_answers: list[MockResponse] = []

    def handler(request: Request) -> MockResponse:
        answer = next(answers)
        transport_answers.append(answer)
        return answer

    async with mock_client(handler, max_retries=2) as client:
        page = await client.list_page("thread_1")
        assert page.data == ()
        assert client.retries == 2
    async with mock_client(lambda r: failure, max_retries=1) as client:
        with pytest.raises(cls, match=text) as info:
            await client.list_page("thread_1")
        assert info.value.retryable
        assert client.retries == 1


async def test_client_closes_the_transport() -> None:
    transport = MockTransport(lambda r: MockResponse(200, body=_page([])))
    client = fast_client(SOCKETLESS_URL, transport=transport)
    async with client:
        await client.list_page("t")
    assert transport.closed
    assert client.transport is transport
    with pytest.raises(aiorunlist.RunListError, match="closed"):
        await client.list_page("t")
    assert len(transport.requests) == 1


def test_transport_and_session_are_exclusive() -> None:
    with pytest.raises(TypeError, match="Transport"):
        aiorunlist.Client(API_KEY, transport=object())  # type: ignore[arg-type]

    async def make() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError, match="not both"):
                aiorunlist.Client(
                    API_KEY, session=session, transport=MockTransport(lambda r: MockResponse())
                )

    asyncio.run(make())


# --- redirects ----------------------------------------------------------------------------------


async def test_same_origin_redirect_is_followed() -> None:
    def handler(request: Request) -> MockResponse:
        if "/v1/" in request.url:
            moved = request.url.replace("/v1/", "/v2/")
            return MockResponse(307, headers={"Location": moved})
        return MockResponse(200, body=_page(make_runs("thread_1", 2)))

    transport = MockTransport(handler)
    async with fast_client(SOCKETLESS_URL, transport=transport) as client:
        page = await client.list_page("thread_1")
    assert len(page.data) == 2
    assert [r.url.split("/")[3] for r in transport.requests] == ["v1", "v2"]


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1",
        "http://127.0.0.1:99999/x",
        "https://",
        "data:,hi",
        "http://fake.test\\@evil.test/x",
        "https://evil.test/v1/threads/thread_1/runs",
    ],
)
async def test_a_bad_or_foreign_redirect_is_a_typed_error_sent_once(location: str) -> None:
    transport = MockTransport(lambda r: MockResponse(302, headers={"Location": location}))
    async with fast_client(SOCKETLESS_URL, transport=transport, max_retries=3) as client:
        with pytest.raises(aiorunlist.APIConnectionError, match="redirected") as info:
            await client.list_page("thread_1")
    assert not info.value.retryable
    assert len(transport.requests) == 1


async def test_endless_redirects_stop() -> None:
    transport = MockTransport(lambda r: MockResponse(302, headers={"Location": r.url}))
    async with fast_client(SOCKETLESS_URL, transport=transport) as client:
        with pytest.raises(aiorunlist.APIConnectionError, match="more than 5 redirects"):
            await client.list_page("thread_1")
    assert len(transport.requests) == 6


# --- the key never leaks ------------------------------------------------------------------------


def _reachable_text(error: BaseException) -> Iterator[str]:
    """The text of everything an error holds: its args, attributes, causes and contexts."""
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (type, logging.Logger)):
            continue
        seen.add(id(obj))
        yield repr(obj)
        if isinstance(obj, BaseException):
            todo += [obj.__cause__, obj.__context__, *obj.args, *vars(obj).values()]
            todo += [getattr(obj, "request_info", None)]
        elif isinstance(obj, dict):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set)):
            todo += list(obj)
        elif hasattr(obj, "__dict__") and not callable(obj):
            todo += list(vars(obj).values())


def _echo(request: Request) -> MockResponse:
    auth = request.headers["Authorization"]
    return MockResponse(
        503,
        body={"error": {"message": f"bad header {auth}", "code": auth, "type": None}},
        headers={"x-echo": auth},
    )


async def test_an_echoed_key_is_masked_in_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiorunlist")
    async with mock_client(_echo, max_retries=1) as client:
        with pytest.raises(aiorunlist.InternalServerError) as info:
            await client.list_page("thread_1")
    error = info.value
    assert "<hidden>" in str(error)
    for text in (str(error), repr(error), *map(repr, error.args), repr(error.body)):
        assert API_KEY not in text
    assert API_KEY not in repr(dict(error.headers))
    assert all(API_KEY not in text for text in _reachable_text(error))
    assert "retrying" in caplog.text
    assert API_KEY not in caplog.text


async def test_malformed_responses_keep_no_key_in_the_chain() -> None:
    """aiohttp's parse errors carry the request headers; none of it reaches our errors."""

    async def bad_status_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 9999 Nope\r\nBad Header\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(bad_status_line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with fast_client(f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
            with pytest.raises(aiorunlist.APIConnectionError) as info:
                await client.list_page("thread_1")
    finally:
        server.close()
        await server.wait_closed()
    texts = list(_reachable_text(info.value))
    assert texts
    assert all(API_KEY not in text for text in texts)


# --- what a server's answer says ----------------------------------------------------------------


async def test_a_200_with_no_requests_left_pauses_the_next_request() -> None:
    times: list[float] = []

    def handler(request: Request) -> MockResponse:
        times.append(anyio.current_time())
        headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"}
        return MockResponse(200, body=_page([]), headers=headers)

    async with mock_client(handler) as client:
        await client.list_page("thread_1")
        await client.list_page("thread_1")
        assert pacer_of(client).paused_until > 0
    assert times[1] - times[0] >= 0.29


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": float("inf")}, "timeout must be a finite number"),
        ({"timeout": float("nan")}, "timeout must be a finite number"),
        ({"max_response_bytes": True}, "max_response_bytes must be a positive integer"),
        ({"api_key": "sk-a\r\nX-Evil: 1"}, "api_key has whitespace or a control character"),
        ({"api_key": "sk-a\n"}, "api_key has whitespace"),
        ({"retry": aiorunlist.Retries(), "max_retries": 3}, "retry=Retries"),
        ({"retry": 3}, "retry must be an aiorunlist.Retries"),
        ({"pacing": aiorunlist.Pacing(), "control": aiorunlist.LocalTrafficControl()}, "control"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", API_KEY)
    with pytest.raises((ValueError, TypeError), match=message):
        aiorunlist.Client(base_url=SOCKETLESS_URL, **kwargs)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")])
def test_pacing_floor_must_be_a_positive_rate(value: float) -> None:
    with pytest.raises(ValueError, match="min_requests_per_second"):
        aiorunlist.Pacing(adaptive=True, min_requests_per_second=value)


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("initial_retry_delay", 0.25, ("retry", "initial_delay")),
        ("max_retry_delay", 3.0, ("retry", "max_delay")),
        ("retry_budget", 7, ("retry", "budget")),
        ("connect_timeout", 2.0, ("timeouts", "connect")),
        ("read_timeout", 4.0, ("timeouts", "read")),
        ("page_timeout", 9.0, ("timeouts", "page")),
    ],
)
def test_old_keywords_still_work_with_a_deprecation_warning(
    name: str, value: float, where: tuple[str, str]
) -> None:
    settings: dict[str, Any] = {name: value}
    with pytest.warns(DeprecationWarning, match=rf"Client\({name}=\.\.\.\) is deprecated"):
        client = aiorunlist.Client(API_KEY, base_url=SOCKETLESS_URL, **settings)
    group, attribute = where
    assert getattr(getattr(client, group), attribute) == value


def test_grouped_settings_and_their_old_views() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = aiorunlist.Client(
            API_KEY,
            base_url=SOCKETLESS_URL,
            retry=aiorunlist.Retries(max_retries=4, initial_delay=0.1, max_delay=2),
            timeout=aiorunlist.Timeouts(request=30, page=5),
        )
    assert client.max_retries == 4
    assert client.initial_retry_delay == 0.1
    assert client.max_retry_delay == 2.0
    assert client.page_timeout == 5
    assert aiorunlist.Client(API_KEY, base_url=SOCKETLESS_URL, max_retries=0).max_retries == 0


# --- the id source ------------------------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["raise", "collect"])
@pytest.mark.parametrize("api", ["runs_many", "pages_many"])
async def test_an_id_source_cancelled_on_its_own_is_an_error_not_the_end(
    socketless_client: aiorunlist.Client, socketless_server: FakeServer, on_error: str, api: str
) -> None:
    tids = socketless_server.seed(5, 2)

    async def ids() -> AsyncIterator[str]:
        yield tids[0]
        yield tids[1]
        feeder: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        feeder.cancel()  # someone cancelled the task feeding this source
        yield await feeder

    fan_out = getattr(socketless_client, api)
    with pytest.raises(aiorunlist.RunListError, match="raised CancelledError of its own"):
        async with fan_out(ids(), on_error=on_error) as stream:
            async for _ in stream:
                pass


# --- aiohttp specifics, over 127.0.0.1 ----------------------------------------------------------


async def test_a_borrowed_session_closed_by_its_owner_says_so(server: FakeServer) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    async with fast_client(server.base_url, session=session) as client:
        with pytest.raises(aiorunlist.RunListError, match="lent to this Client was closed"):
            await client.list_page("thread_1")
    assert server.requests == []


async def test_connection_refused_keeps_a_safe_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with fast_client(f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
        with pytest.raises(aiorunlist.APIConnectionError) as info:
            await client.list_page("thread_1")
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
    del info
    gc.collect()


async def test_mock_and_http_agree(server: FakeServer) -> None:
    """The same fake server, over HTTP and socket-free, lists the same runs."""
    (tid,) = server.seed(1, 23)
    async with fast_client(server.base_url) as http:
        over_http = [r async for r in http.runs(tid, page_size=5)]
    async with fast_client(SOCKETLESS_URL, transport=MockTransport(server.handle)) as mock:
        socket_free = [r async for r in mock.runs(tid, page_size=5)]
    assert over_http == socket_free
    assert orjson.dumps([aiorunlist.unstructure(r) for r in socket_free])
