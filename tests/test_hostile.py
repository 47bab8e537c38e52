"""What a hostile server or a careless caller sends: regressions of promises that did not hold.

Socket-free through MockTransport unless the property is about a real connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import socket
import struct
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist import Request
from aiorunlist._protocol import _exact_needed, decode_page
from aiorunlist.testing import FakeServer, Fault, MockResponse, MockTransport, make_runs
from tests.conftest import API_KEY, SOCKETLESS_URL, fast_client
from tests.test_transport import _reachable_text

pytestmark = pytest.mark.anyio


def _page(data: list[dict[str, Any]], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more}


def mock_client(handler: Any, **kwargs: Any) -> aiorunlist.Client:
    return fast_client(SOCKETLESS_URL, transport=MockTransport(handler), **kwargs)


async def _ids(*ids: str) -> AsyncIterator[str]:
    for tid in ids:
        yield tid


# --- bad arguments are refused before anything is sent -------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/v1#",
        "http://127.0.0.1:8080/v1?",
        "http://127.0.0.1:8080/v1?#",
        "http://127.0.0.1:8080/v 1",
        "http://127.0.0.1:8080/v1\tx",
        "http://127.0.0.1:99999/v1",
    ],
)
def test_a_base_url_that_would_send_requests_elsewhere_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        aiorunlist.Client(
            API_KEY, base_url=base_url, transport=MockTransport(lambda r: MockResponse(200))
        )


async def test_a_base_url_with_a_trailing_newline_is_taken_without_it() -> None:
    sent: list[Request] = []

    def handler(request: Request) -> MockResponse:
        sent.append(request)
        return MockResponse(200, body=_page([]))

    base = SOCKETLESS_URL + "\n"
    async with fast_client(base, transport=MockTransport(handler)) as client:
        await client.list_page("thread_1")
    assert sent[0].url.startswith(SOCKETLESS_URL + "/threads/thread_1/runs?")


# --- integers beyond 64 bits stay exact ----------------------------------------------------------

BIG = 2**64 + 1  # orjson alone turns it into the float 1.8446744073709552e+19


def _big_body(n: int = BIG) -> bytes:
    return (
        b'{"object":"list","data":[{"id":"run_1","object":"thread.run","created_at":%d,'
        b'"thread_id":"thread_1","metadata":{"n":%d},"x_counter":-%d}],"has_more":false}'
        % (n, n, n)
    )


async def test_integers_beyond_64_bits_stay_exact_in_runs_and_pages() -> None:
    async with mock_client(lambda r: MockResponse(200, body=_big_body())) as client:
        [run] = [r async for r in client.runs("thread_1")]
        page = await client.list_page("thread_1")
        async with client.runs_many(["thread_1"]) as stream:
            many = [r async for r in stream]
        async with client.pages_many(["thread_1"]) as pages:
            raw = [p.raw async for p in pages]
    for got in (run, page.data[0], many[0]):
        assert got.created_at == BIG
        assert type(got.created_at) is int
        assert aiorunlist.unstructure(got) == {
            "id": "run_1",
            "object": "thread.run",
            "created_at": BIG,
            "thread_id": "thread_1",
            "metadata": {"n": BIG},
            "x_counter": -BIG,
        }
    assert raw[0][0]["created_at"] == BIG


async def test_an_error_body_keeps_big_integers_exact() -> None:
    body = b'{"error":{"message":"too many","code":null},"limit":%d}' % BIG
    async with mock_client(lambda r: MockResponse(404, body=body)) as client:
        with pytest.raises(aiorunlist.NotFoundError) as info:
            await client.list_page("thread_1")
    assert info.value.body == {"error": {"message": "too many", "code": None}, "limit": BIG}


@given(
    st.lists(
        st.integers(min_value=-(10**40), max_value=10**40)
        | st.floats(allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=5,
    ),
    st.text(alphabet="0123456789abc", max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_every_number_decodes_exactly(numbers: list[int | float], text: str) -> None:
    runs = [{"id": f"run_{i}", "created_at": n, "note": text} for i, n in enumerate(numbers)]
    body = _page(runs)
    # json, the exact encoder: orjson refuses integers beyond 64 bits.
    raw = decode_page(200, {}, json.dumps(body).encode(), thread_id="thread_1")
    assert raw.data == runs
    assert [type(r["created_at"]) for r in raw.data] == [type(n) for n in numbers]


def test_no_spurious_fallback_on_ordinary_pages() -> None:
    body = orjson.dumps(_page(make_runs("thread_1", 100, seed=3)))
    assert not _exact_needed(body)
    assert _exact_needed(b'{"a":[1,%d]}' % BIG)
    assert _exact_needed(b'{"a":"%d"}' % BIG)  # a long digit run in a string: exact, slower
    assert not _exact_needed(b'{"a":123456789012345678}')  # 18 digits: orjson is exact


# --- frozen runs share nothing with their callers ------------------------------------------------


def _rich_run() -> dict[str, Any]:
    return {
        "id": "run_1",
        "metadata": {"a": {"b": [1, 2]}},
        "x_unknown": {"c": [1, {"d": 2}]},
        "tools": [
            {"type": "weird", "cfg": {"z": [1]}},
            {"type": "function", "function": {"name": "f", "parameters": {"p": {"q": 1}}}},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"schema": {"s": [1]}}},
    }


def test_a_structured_run_keeps_no_reference_to_the_callers_dicts() -> None:
    data = _rich_run()
    original = copy.deepcopy(data)
    run = aiorunlist.structure(data, aiorunlist.Run)
    data["metadata"]["a"]["b"].append(3)
    data["x_unknown"]["c"][1]["d"] = 3
    data["tools"][0]["cfg"]["z"].append(2)
    data["tools"][1]["function"]["parameters"]["p"]["q"] = 2
    data["response_format"]["json_schema"]["schema"]["s"].append(2)
    assert aiorunlist.unstructure(run) == original


def test_editing_an_unstructured_result_changes_neither_the_run_nor_later_results() -> None:
    data = _rich_run()
    run = aiorunlist.structure(data, aiorunlist.Run)
    out = aiorunlist.unstructure(run)
    out["metadata"]["a"]["b"].append(3)
    out["x_unknown"]["c"][1]["d"] = 3
    out["tools"][0]["cfg"]["z"].append(2)
    out["tools"][1]["function"]["parameters"]["p"]["q"] = 2
    out["response_format"]["json_schema"]["schema"]["s"].append(2)
    assert aiorunlist.unstructure(run) == _rich_run()
    assert run.metadata == {"a": {"b": [1, 2]}}
    page = aiorunlist.structure(_page([data]), aiorunlist.RunPage)
    page_out = aiorunlist.unstructure(page)
    page_out["data"][0]["metadata"]["a"]["b"].clear()
    assert aiorunlist.unstructure(page)["data"][0] == _rich_run()


async def test_runs_from_the_client_share_nothing_with_their_results() -> None:
    async with mock_client(lambda r: MockResponse(200, body=_page([_rich_run()]))) as client:
        [run] = [r async for r in client.runs("thread_1")]
    out = aiorunlist.unstructure(run)
    out["metadata"]["a"]["b"].append(3)
    assert aiorunlist.unstructure(run) == _rich_run()


# --- a run of another thread ---------------------------------------------------------------------


async def test_a_page_naming_another_thread_is_refused() -> None:
    def handler(request: Request) -> MockResponse:
        if "/thread_1/" in request.url:  # a same-origin redirect to another thread's listing
            moved = request.url.replace("/thread_1/", "/thread_2/")
            return MockResponse(302, headers={"Location": moved})
        return MockResponse(200, body=_page(make_runs("thread_2", 3)))

    async with mock_client(handler, max_retries=3) as client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="another thread") as info:
            [r async for r in client.runs("thread_1")]
        assert not info.value.retryable
        with pytest.raises(aiorunlist.APIResponseValidationError, match="another thread"):
            async with client.runs_many(["thread_1"]) as stream:
                [r async for r in stream]
        async with client.pages_many(["thread_1"], on_error="collect") as pages:
            got = [p async for p in pages]
        assert [p.runs for p in got] == [()]
        assert isinstance(got[0].error, aiorunlist.APIResponseValidationError)


async def test_runs_without_a_thread_id_are_still_fine() -> None:
    runs = make_runs("thread_1", 2)
    for run in runs:
        del run["thread_id"]
    async with mock_client(lambda r: MockResponse(200, body=_page(runs))) as client:
        got = [r async for r in client.runs("thread_1")]
    assert [r.id for r in got] == [r["id"] for r in runs]


# --- long ids in messages ------------------------------------------------------------------------


async def test_a_huge_thread_id_is_cut_in_messages_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiorunlist")
    huge = "thread_" + "x" * 1_000_000
    async with mock_client(lambda r: MockResponse(503, body={}), max_retries=1) as client:
        with pytest.raises(aiorunlist.InternalServerError) as info:
            await client.list_page(huge)
    assert info.value.thread_id == huge  # the attribute keeps the whole id
    message_is_short = len(str(info.value)) < 400
    log_is_short = len(caplog.text) < 2000
    assert message_is_short
    assert log_is_short
    assert "1,000,007 characters" in str(info.value)


# --- the key in server text that the library formats ---------------------------------------------


def _echoing_run(request: Request) -> MockResponse:
    auth = request.headers["Authorization"]
    return MockResponse(200, body=_page([{"id": "run_1", "usage": auth}]))


async def test_an_echoed_key_in_a_malformed_run_is_masked() -> None:
    async with mock_client(_echoing_run) as client:
        errors: list[BaseException] = []
        with pytest.raises(aiorunlist.APIResponseValidationError) as info:
            [r async for r in client.runs("thread_1")]
        errors.append(info.value)
        with pytest.raises(aiorunlist.APIResponseValidationError) as info:
            await client.list_page("thread_1")
        errors.append(info.value)
        with pytest.raises(aiorunlist.APIResponseValidationError) as info:
            async with client.runs_many(["thread_1"]) as stream:
                [r async for r in stream]
        errors.append(info.value)
        async with client.pages_many(["thread_1"], on_error="collect") as pages:
            errors += [p.error async for p in pages if p.error is not None]
    assert len(errors) == 4
    for error in errors:
        assert "<hidden>" in str(error)
        assert all(API_KEY not in text for text in _reachable_text(error))


async def test_an_echoed_key_in_a_redirect_is_masked_in_the_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiorunlist")

    def handler(request: Request) -> MockResponse:
        if "moved" not in request.url:
            key = request.headers["Authorization"].split()[1]
            return MockResponse(307, headers={"Location": f"/v1/moved?k={key}"})
        return MockResponse(200, body=_page([]))

    async with mock_client(handler) as client:
        await client.list_page("thread_1")
    assert "moved?k=<hidden>" in caplog.text
    assert API_KEY not in caplog.text


# --- what a server's answer says, socket-free ----------------------------------------------------


async def test_an_absurd_retry_after_on_any_status_is_no_hint() -> None:
    absurd = {"retry-after": "Fri, 01 Jan 99999999999 00:00:00 GMT"}
    async with mock_client(lambda r: MockResponse(404, headers=absurd)) as client:
        with pytest.raises(aiorunlist.NotFoundError):
            await client.list_page("thread_1")
    answers = iter([MockResponse(503, headers=absurd), MockResponse(200, body=_page([]))])
    async with mock_client(lambda r: next(answers), max_retries=1) as client:
        await client.list_page("thread_1")  # retried after the backoff, not the "hint"
        assert client.retries == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_retry_delay": float("nan")},
        {"max_retry_delay": float("inf")},
        {"pacing": "fast"},
    ],
)
def test_bad_numbers_are_refused_at_construction(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises((ValueError, TypeError)):
            aiorunlist.Client(API_KEY, base_url=SOCKETLESS_URL, **kwargs)


# --- the fake server stays quiet -----------------------------------------------------------------


async def test_the_fake_server_is_quiet_when_a_client_leaves_before_a_cut_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:

    caplog.set_level(logging.DEBUG)
    async with FakeServer(api_key=API_KEY) as server:
        server.add_thread("thread_1", make_runs("thread_1", 3))
        server.add_fault(Fault(truncate=True, delay=0.2))
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /v1/threads/thread_1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b"OpenAI-Beta: assistants=v2\r\n\r\n"
        )
        await writer.drain()
        with anyio.fail_after(5):
            # The server has the request, and waits out the fault's delay.
            while not server.requests:  # noqa: ASYNC110 - polling the server's record
                await asyncio.sleep(0.005)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # a reset, before the fault's delay is over
        with anyio.fail_after(5):
            # The cut answer was attempted on the closed connection.
            while server.in_flight:  # noqa: ASYNC110 - polling the server's counter
                await asyncio.sleep(0.01)
        assert len(server.requests) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_headers_stay_case_insensitive_once_an_echoed_key_is_masked() -> None:
    answers = iter(
        [
            MockResponse(
                503,
                headers={"X-Echo": f"Bearer {API_KEY}", "Retry-After-Ms": "5"},
                body={},
            ),
            MockResponse(200, body=_page([])),
        ]
    )
    async with mock_client(lambda r: next(answers), max_retries=0) as client:
        with pytest.raises(aiorunlist.InternalServerError) as info:
            await client.list_page("thread_1")
    headers = info.value.headers
    assert headers["x-echo"] == "Bearer <hidden>"
    assert headers.get("retry-after-ms") == "5"


# --- an id source that fails surfaces, whatever it raises -----------------------------------------


class _Abort(BaseException):
    """Not an Exception, like KeyboardInterrupt or SystemExit."""


@pytest.mark.parametrize("on_error", ["raise", "collect"])
@pytest.mark.parametrize("api", ["runs_many", "pages_many"])
@pytest.mark.parametrize("error", [_Abort("stop"), RuntimeError("broken source")])
async def test_an_id_source_that_fails_surfaces_as_itself(
    on_error: str, api: str, error: BaseException
) -> None:
    async def ids() -> AsyncIterator[str]:
        yield "thread_1"
        raise error

    async with mock_client(lambda r: MockResponse(200, body=_page([]))) as client:
        fan_out = getattr(client, api)
        with pytest.raises(type(error)) as info:
            async with fan_out(ids(), on_error=on_error) as stream:
                async for _ in stream:
                    pass
        assert info.value is error
        async with client.runs_many(["thread_1"]) as stream:  # the client is still usable
            assert [r async for r in stream] == []


async def test_deeply_nested_json_is_a_typed_error_or_kept() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    exact = (
        b'{"object":"list","data":[{"id":"run_1","metadata":{"a":%s},"n":%d}],"has_more":false}'
        % (deep, BIG)
    )
    async with mock_client(lambda r: MockResponse(200, body=exact), max_retries=2) as client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="nested too deeply"):
            await client.list_page("thread_1")
        assert client.retries == 0  # the same server would send it again
    plain = b'{"object":"list","data":[{"id":"run_1","metadata":{"a":%s}}],"has_more":false}' % deep
    async with mock_client(lambda r: MockResponse(200, body=plain)) as client:
        [run] = [r async for r in client.runs("thread_1")]
    out = aiorunlist.unstructure(run)  # deeper than the stack: copied without recursion
    assert run.metadata is not None
    copied, kept, depth = out["metadata"]["a"], run.metadata["a"], 1
    while kept:
        assert copied is not kept
        copied, kept, depth = copied[0], kept[0], depth + 1
    assert copied == []
    assert depth == 1000


@pytest.mark.parametrize("before", [0, 35, 40, 44])
async def test_a_key_cut_short_in_a_quoted_body_is_masked_too(before: int) -> None:
    """Messages quote the first characters of a body: the key may be cut in the middle."""

    def handler(request: Request) -> MockResponse:
        auth = request.headers["Authorization"].encode()
        return MockResponse(200, body=b"<" * before + auth + b" and more")

    async with mock_client(handler, max_retries=0) as client:
        with pytest.raises(aiorunlist.APIResponseValidationError, match="not JSON") as info:
            await client.list_page("thread_1")
    for text in _reachable_text(info.value):
        assert API_KEY[:9] not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_headers": {"X-A": "a\r\nX-Evil: 1"}}, "line break"),
        ({"default_headers": {"X A": "b"}}, "not a valid HTTP header name"),
        ({"default_headers": {"X-A": 5}}, "must be a string"),
        ({"organization": "org_1\n"}, "organization: .* line break"),
        ({"project": "proj\r"}, "project: .* line break"),
    ],
)
def test_headers_no_request_could_carry_are_refused_at_construction(
    kwargs: dict[str, Any], message: str
) -> None:
    sent: list[Request] = []

    def handler(request: Request) -> MockResponse:
        sent.append(request)
        return MockResponse(200, body=_page([]))

    with pytest.raises((ValueError, TypeError), match=message):
        aiorunlist.Client(
            API_KEY, base_url=SOCKETLESS_URL, transport=MockTransport(handler), **kwargs
        )
    assert sent == []


# --- property: wherever a server echoes the key, no error or log holds it -------------------------

_ECHO_PLACES = ["error_body", "header", "not_json", "run_field", "redirect", "request_id"]


def _echoing(place: str, pad: int) -> Any:
    def handler(request: Request) -> MockResponse:
        key = request.headers["Authorization"].split()[1]
        text = "x" * pad + key
        if place == "error_body":
            return MockResponse(400, body={"error": {"message": text, "code": text}})
        if place == "header":
            return MockResponse(503, headers={"x-echo": text}, body={})
        if place == "not_json":
            return MockResponse(200, body=b"<" + text.encode())
        if place == "run_field":
            return MockResponse(200, body=_page([{"id": "run_1", "usage": text}]))
        if place == "redirect":
            if "moved" in request.url:
                return MockResponse(404, body={"error": {"message": "gone"}})
            return MockResponse(302, headers={"Location": f"/v1/moved/{text}"})
        return MockResponse(500, headers={"x-request-id": text}, body={})

    return handler


@given(st.sampled_from(_ECHO_PLACES), st.integers(min_value=0, max_value=120))
@settings(max_examples=60, deadline=None)
def test_an_echoed_key_never_reaches_an_error_or_a_log(place: str, pad: int) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("aiorunlist")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    async def main() -> BaseException:
        async with mock_client(_echoing(place, pad), max_retries=1) as client:
            try:
                [r async for r in client.runs("thread_1")]
            except aiorunlist.RunListError as exc:
                return exc
        raise AssertionError("no error")

    try:
        error = asyncio.run(main())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    texts = [*_reachable_text(error), *(r.getMessage() for r in records)]
    texts += [repr(vars(r)) for r in records]
    for text in texts:
        assert API_KEY[:9] not in text


# --- malformed answers over a real connection --------------------------------------------------

_MALFORMED = [
    b"HTTP/1.1 9999 Nope\r\nBad Header\r\n\r\n",
    b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"object":',
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70000 + b"\r\n\r\n{}",
    b"garbage\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Echo: \xff\xfe\r\n\r\n{}",
    b"",
]


@pytest.mark.parametrize("answer", _MALFORMED, ids=range(len(_MALFORMED)))
async def test_a_malformed_answer_is_a_typed_error_holding_no_key(answer: bytes) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with fast_client(f"http://127.0.0.1:{port}/v1", max_retries=1) as client:
            with pytest.raises(aiorunlist.RunListError) as info:
                await client.list_page("thread_1")
    finally:
        server.close()
        await server.wait_closed()
    assert all(API_KEY[:9] not in text for text in _reachable_text(info.value))


def test_unstructure_without_a_copy_gives_the_same_json_sharing_the_runs_values() -> None:
    run = aiorunlist.structure(_rich_run(), aiorunlist.Run)
    page = aiorunlist.structure(_page([_rich_run()]), aiorunlist.RunPage)
    shared, copied = aiorunlist.unstructure(run, copy=False), aiorunlist.unstructure(run)
    assert shared == copied == _rich_run()
    assert shared["metadata"] is run.metadata
    assert copied["metadata"] is not run.metadata
    assert aiorunlist.unstructure(page, copy=False) == aiorunlist.unstructure(page)
    assert aiorunlist.unstructure([run], copy=False) == [copied]
    assert aiorunlist.unstructure({"a": run}, copy=False) == {"a": copied}
    assert aiorunlist.unstructure(run.tools, copy=False) == copied["tools"]
