"""The client against the shipped fake server: socket-free through MockTransport, and over
real HTTP on 127.0.0.1 where sessions, connections and timeouts are what is tested."""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
import anyio
import pytest

import aiorunlist
from aiorunlist.testing import FakeServer, Fault, MockTransport
from tests import conftest
from tests.conftest import API_KEY, SOCKETLESS_URL

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(socketless_server: FakeServer) -> FakeServer:
    return socketless_server


@pytest.fixture
def client(socketless_client: aiorunlist.Client) -> aiorunlist.Client:
    return socketless_client


def fast_client(server: FakeServer, **kwargs: Any) -> aiorunlist.Client:
    """A client of ``server``: over HTTP if it was started, else socket-free."""
    if server.port:
        return conftest.fast_client(server.base_url, **kwargs)
    transport = MockTransport(server.handle)
    return conftest.fast_client(SOCKETLESS_URL, transport=transport, **kwargs)


# --- construction and configuration -------------------------------------------------------------


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(aiorunlist.RunListError, match="OPENAI_API_KEY"):
        aiorunlist.Client()


async def test_environment_is_read(
    monkeypatch: pytest.MonkeyPatch, http_server: FakeServer
) -> None:
    server = http_server
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_ORG_ID", "org_1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_1")
    server.add_thread("thread_env", [])
    async with aiorunlist.Client() as client:
        assert client.base_url == server.base_url
        await client.list_page("thread_env")
    headers = server.requests[-1].headers
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["OpenAI-Organization"] == "org_1"
    assert headers["OpenAI-Project"] == "proj_1"


async def test_headers_sent(client: aiorunlist.Client, server: FakeServer) -> None:
    server.add_thread("thread_h", [])
    await client.list_page("thread_h")
    headers = server.requests[-1].headers
    assert headers["OpenAI-Beta"] == "assistants=v2"
    assert headers["User-Agent"].startswith(f"aiorunlist/{aiorunlist.__version__}")
    assert "OpenAI-Organization" not in headers


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert aiorunlist.Client("k").base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.invalid/v1",
        "HTTP://example.invalid/v1",
        "http://127.0.0.1.nip.io/v1",
        "http://127.attacker.example/v1",
    ],
)
def test_plain_http_to_remote_host_warns(url: str) -> None:
    with pytest.warns(aiorunlist.InsecureBaseURLWarning, match="unencrypted"):
        aiorunlist.Client("k", base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.2:8/v1", "http://[::1]:8/v1", "http://localhost:8/v1"]
)
def test_plain_http_to_loopback_is_fine(url: str) -> None:
    aiorunlist.Client("k", base_url=url)  # warnings are errors in this suite


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "not a url"}, "base_url"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aiorunlist.Client("k", **kwargs)


# --- the key stays secret ----------------------------------------------------------------------


async def test_key_never_in_repr_errors_or_logs(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fast_client(server, max_retries=1) as client:
        assert API_KEY not in repr(client)
        assert API_KEY not in str(vars(client).get("_rng"))
        server.add_fault(Fault(status=500, times=2))
        with pytest.raises(aiorunlist.InternalServerError) as info:
            await client.list_page("thread_missing")
    texts = [str(info.value), repr(info.value), caplog.text]
    async with fast_client(server, api_key="sk-wrong-key-987") as bad:
        with pytest.raises(aiorunlist.AuthenticationError) as auth:
            await bad.list_page("thread_x")
    texts += [str(auth.value), repr(auth.value), repr(auth.value.body)]
    for text in texts:
        assert API_KEY not in text
        assert "sk-wrong-key-987" not in text
    assert "retrying thread thread_missing" in caplog.text


# --- sessions ----------------------------------------------------------------------------------


async def test_borrowed_session_is_not_closed(http_server: FakeServer) -> None:
    server = http_server
    server.add_thread("thread_b", [])
    async with aiohttp.ClientSession() as session:
        async with aiorunlist.Client(API_KEY, base_url=server.base_url, session=session) as c:
            await c.list_page("thread_b")
        assert not session.closed
        async with session.get(server.base_url + "/threads/thread_b/runs") as resp:
            assert resp.status == 401  # the session still works (no key: 401)


async def test_owned_session_is_one_for_the_client_life(http_server: FakeServer) -> None:
    server = http_server
    server.add_thread("thread_s", [])
    client = fast_client(server)
    await client.list_page("thread_s")
    first = client._session
    await client.list_page("thread_s")
    assert client._session is first
    await client.aclose()
    assert first is not None
    assert first.closed
    with pytest.raises(aiorunlist.RunListError, match="closed"):
        await client.list_page("thread_s")
    await client.aclose()  # idempotent


# --- one page ----------------------------------------------------------------------------------


async def test_list_page_is_one_request_exactly_as_served(
    client: aiorunlist.Client, server: FakeServer
) -> None:
    (tid,) = server.seed(1, 45)
    page = await client.list_page(tid, limit=20, order="asc")
    expected = server.expected_ids(tid, "asc")
    assert [r.id for r in page.data] == expected[:20]
    assert page.has_more is True
    assert page.first_id == expected[0]
    assert page.last_id == expected[19]
    assert page.request_id is not None
    assert page.request_id.startswith("req_")
    assert len(server.requests) == 1
    assert server.requests[0].query == {"limit": "20", "order": "asc"}
    page2 = await client.list_page(tid, limit=100, order="desc", after=expected[10])
    assert [r.id for r in page2.data] == list(reversed(expected[:10]))
    assert page2.has_more is False


async def test_runs_are_structured_fully(client: aiorunlist.Client, server: FakeServer) -> None:
    (tid,) = server.seed(1, 30, seed=3)
    page = await client.list_page(tid, limit=30)
    raws = {r["id"]: r for r in server.threads[tid]}
    for run in page.data:
        assert run.id is not None
        assert aiorunlist.unstructure(run) == raws[run.id]
        assert isinstance(run.status, aiorunlist.RunStatus)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thread_id": ""}, "thread_id must not be empty"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"order": "sideways"}, "order"),
    ],
)
async def test_bad_input_raises_before_sending(
    client: aiorunlist.Client, server: FakeServer, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"thread_id": "thread_1", **kwargs}
    with pytest.raises(ValueError, match=message):
        await client.list_page(args.pop("thread_id"), **args)
    assert server.requests == []


@pytest.mark.parametrize("thread_id", ["../x", "a/b", "a?b", "a#b", "x/../../etc", "%2F"])
async def test_thread_id_cannot_escape_its_path_segment(
    client: aiorunlist.Client, server: FakeServer, thread_id: str
) -> None:
    server.add_thread(thread_id, [])
    page = await client.list_page(thread_id)
    assert page.data == ()
    (request,) = server.requests
    assert request.thread_id == thread_id
    assert request.path.startswith("/v1/threads/")
    assert request.path.endswith("/runs")
    assert request.query == {"limit": "20", "order": "desc"}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, None, aiorunlist.BadRequestError),
        (403, None, aiorunlist.PermissionDeniedError),
        (422, None, aiorunlist.UnprocessableEntityError),
        (429, "insufficient_quota", aiorunlist.QuotaExceededError),
    ],
)
async def test_non_retryable_errors_are_typed_and_sent_once(
    client: aiorunlist.Client, server: FakeServer, status: int, code: str | None, cls: type
) -> None:
    server.add_thread("thread_e", [])
    server.add_fault(Fault(status=status, error_code=code, times=5))
    with pytest.raises(cls) as info:
        await client.list_page("thread_e")
    err = info.value
    assert isinstance(err, aiorunlist.APIStatusError)
    assert err.status_code == status
    assert err.code == code
    assert err.request_id is not None
    assert "thread_e" in str(err)
    assert len(server.requests) == 1


async def test_not_found_and_auth(client: aiorunlist.Client, server: FakeServer) -> None:
    with pytest.raises(aiorunlist.NotFoundError, match="thread_nope") as info:
        await client.list_page("thread_nope")
    assert info.value.thread_id == "thread_nope"
    async with fast_client(server, api_key="sk-other") as bad:
        with pytest.raises(aiorunlist.AuthenticationError) as auth:
            await bad.list_page("thread_nope")
    assert auth.value.code == "invalid_api_key"


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429, headers={"retry-after-ms": "5"}),
        Fault(status=500),
        Fault(status=503, headers={"retry-after": "0"}),
        Fault(status=408),
        Fault(status=409),
        Fault(truncate=True),
        Fault(drop=True),
        Fault(not_json=True),
        Fault(status=400, headers={"x-should-retry": "true"}),
    ],
    ids=lambda f: repr(f)[:60],
)
async def test_transient_faults_are_retried(
    client: aiorunlist.Client, server: FakeServer, fault: Fault
) -> None:
    (tid,) = server.seed(1, 5)
    server.add_fault(attrs_evolve(fault, times=2))
    page = await client.list_page(tid)
    assert [r.id for r in page.data] == server.expected_ids(tid)
    assert len(server.requests) == 3


def attrs_evolve(fault: Fault, **changes: Any) -> Fault:
    import attrs

    return attrs.evolve(fault, **changes)


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault(status=500), aiorunlist.InternalServerError),
        (Fault(status=429), aiorunlist.RateLimitError),
        (Fault(drop=True), aiorunlist.APIConnectionError),
        (Fault(truncate=True), aiorunlist.APIConnectionError),
        (Fault(not_json=True), aiorunlist.APIResponseValidationError),
    ],
    ids=lambda f: repr(f)[:40],
)
async def test_retries_are_bounded(server: FakeServer, fault: Fault, cls: type) -> None:
    server.add_thread("thread_r", [])
    server.add_fault(attrs_evolve(fault, times=10))
    async with fast_client(server, max_retries=3) as client:
        with pytest.raises(cls):
            await client.list_page("thread_r")
    if fault.drop:
        # aiohttp itself tries a dropped keep-alive connection once more (RFC 9112 9.3.1)
        assert 4 <= len(server.requests) <= 8
    else:
        assert len(server.requests) == 4


async def test_should_retry_false_wins(client: aiorunlist.Client, server: FakeServer) -> None:
    server.add_thread("thread_r", [])
    server.add_fault(Fault(status=503, headers={"x-should-retry": "false"}))
    with pytest.raises(aiorunlist.InternalServerError):
        await client.list_page("thread_r")
    assert len(server.requests) == 1


async def test_timeout(http_server: FakeServer) -> None:
    server = http_server
    server.add_thread("thread_t", [])
    server.add_fault(Fault(delay=2.0, times=3))
    async with fast_client(server, timeout=0.2, max_retries=1) as client:
        with pytest.raises(aiorunlist.APITimeoutError, match="timed out"):
            await client.list_page("thread_t")
    assert len(server.requests) == 2


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with conftest.fast_client(
        f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=1
    ) as client:
        with pytest.raises(aiorunlist.APIConnectionError, match="could not reach") as info:
            await client.list_page("thread_1")
    assert client.retries == 1
    assert info.value.retryable


async def test_retry_sleep_is_cancellable(client: aiorunlist.Client, server: FakeServer) -> None:
    server.add_thread("thread_c", [])
    server.add_fault(Fault(status=429, headers={"retry-after": "30"}))
    with anyio.move_on_after(0.3) as scope:
        await client.list_page("thread_c")
    assert scope.cancelled_caught
    assert len(server.requests) == 1


async def test_response_size_cap(server: FakeServer) -> None:
    (tid,) = server.seed(1, 50)
    async with fast_client(server, max_response_bytes=1000) as client:
        with pytest.raises(aiorunlist.ResponseTooLargeError, match="max_response_bytes=1000"):
            await client.list_page(tid, limit=50)


async def test_lax_server(server: FakeServer) -> None:
    async with FakeServer(
        api_key=API_KEY, send_page_ids=False, send_request_id=False, force_page_size=7
    ) as lax:
        (tid,) = lax.seed(1, 10)
        async with fast_client(lax) as client:
            page = await client.list_page(tid, limit=3)
    assert len(page.data) == 7
    assert page.first_id is None
    assert page.last_id is None
    assert page.request_id is None


async def test_borrowed_session_with_raise_for_status_still_gives_typed_errors(
    http_server: FakeServer,
) -> None:
    server = http_server
    server.add_fault(Fault(status=429, error_code="insufficient_quota"))
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        aiorunlist.Client(API_KEY, base_url=server.base_url, session=session) as client,
    ):
        with pytest.raises(aiorunlist.QuotaExceededError) as info:
            await client.list_page("thread_any")
    assert info.value.code == "insufficient_quota"  # the body was read, not dropped
