"""A real HTTP server that fakes ``GET /v1/threads/{thread_id}/runs`` of the Assistants API v2."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._transport import Request
from ._data import make_id, make_run
from ._mock import MockResponse

__all__ = ["CHAOS_KINDS", "FakeServer", "Fault", "Quirks", "RateLimit", "RecordedRequest"]

_log = logging.getLogger("aiorunlist.testing")

#: Every kind `FakeServer.chaos` knows; a string of digits (e.g. ``"502"``) is a status too.
CHAOS_KINDS = ("429", "500", "503", "drop", "truncate", "not_json", "slow")

_RUNS_PATH = re.compile(r"/v1/threads/(?P<thread_id>[^/]+)/runs")
_INTEGER = re.compile(r"-?[0-9]+")
_DEFAULT_LIMIT = 20
_ORDERS = ("asc", "desc")
_HTML = "text/html; charset=utf-8"

# status -> (error type, message) of the error bodies a `Fault` with a status sends.
_STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("invalid_request_error", "You are not allowed to perform this request."),
    404: ("invalid_request_error", "Not found."),
    409: ("invalid_request_error", "Another request is modifying this resource."),
    429: ("requests", "Rate limit reached for requests. Please try again in 1ms."),
    500: (
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", "Bad gateway."),
    503: ("server_error", "The engine is currently overloaded, please try again later."),
    504: ("server_error", "Gateway timeout."),
}
_CODE_ERRORS: dict[str, tuple[str, str]] = {
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
}


def _copy_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    return dict(headers)


@attrs.frozen
class Fault:
    """A misbehaviour `FakeServer` applies to the next matching request(s).

    What the request gets, in order of precedence:

    * ``delay``: first wait this many seconds (then answer as below, or normally);
    * ``drop``: close the connection without any response. Note that ``aiohttp.ClientSession``
      transparently retries an idempotent request once when the server disconnects, so a client
      only sees the error when the fault applies twice (``times=2``);
    * ``truncate``: send the normal answer's status and headers, with its full
      ``Content-Length``, but only the first half of its body, then close the connection;
    * ``not_json``: an HTML page (``content-type: text/html``) with ``status`` (default 200),
      like a misconfigured proxy or captive portal;
    * ``body``: these raw bytes with ``status`` (default 200), as ``application/json`` unless
      ``headers`` say otherwise;
    * ``status``: an error body in the spec's ``ErrorResponse`` shape; ``error_code`` becomes
      ``error.code`` (a 429 without ``error_code`` gets ``"rate_limit_exceeded"``).

    ``headers`` are added to (and override) the headers of any response. ``thread_id`` restricts
    the fault to requests for that thread (``None`` matches any request), and ``times`` is how
    many requests it applies to.
    """

    status: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_copy_headers, hash=False)
    error_code: str | None = None
    body: bytes | None = None
    delay: float = 0.0
    truncate: bool = False
    drop: bool = False
    not_json: bool = False
    thread_id: str | None = None
    times: int = 1

    def __attrs_post_init__(self) -> None:
        if self.times < 1:
            raise ValueError(f"times must be at least 1, got {self.times}")
        if not self.delay >= 0:
            raise ValueError(f"delay must be a non-negative number, got {self.delay}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        shapes = [
            name
            for name, on in (
                ("drop", self.drop),
                ("truncate", self.truncate),
                ("not_json", self.not_json),
                ("body", self.body is not None),
                ("error_code", self.error_code is not None),
            )
            if on
        ]
        if len(shapes) > 1:
            raise ValueError(f"a Fault can only be one of {' / '.join(shapes)}")
        if (self.drop or self.truncate) and self.status is not None:
            raise ValueError("drop and truncate faults take no status")
        if self.error_code is not None and self.status is None:
            raise ValueError("error_code needs a status")

    @property
    def kind(self) -> str:
        """A short name for what the fault does: drop, truncate, not_json, body, status, delay."""
        if self.drop:
            return "drop"
        if self.truncate:
            return "truncate"
        if self.not_json:
            return "not_json"
        if self.body is not None:
            return "body"
        if self.status is not None:
            return "status"
        if self.delay > 0:
            return "delay"
        return "headers" if self.headers else "none"


@attrs.frozen
class RecordedRequest:
    """One request `FakeServer` received, and what it answered.

    ``status`` is the status answered: 0 when no response was sent (a dropped request, or one cut
    short by the server closing), -1 while the request is still being handled. ``path`` is as
    sent (percent-encoded, without the query); ``thread_id`` is its decoded thread segment, or
    ``None`` for paths other than ``/v1/threads/{thread_id}/runs``. ``headers`` look names up
    case-insensitively. ``request_id`` is the ``x-request-id`` the answer carried (or would have).
    ``received_at`` is the server's ``time.monotonic()`` when the request arrived: in the
    process of the server, a clock every request of every client is measured on.
    ``answered_at`` is the same clock when the answer was handed to the connection (``None``
    while the request is being handled, or when none was sent).
    """

    method: str
    path: str
    thread_id: str | None
    query: Mapping[str, str] = attrs.field(hash=False)
    headers: Mapping[str, str] = attrs.field(hash=False)
    status: int
    fault: Fault | None
    received_at: float
    request_id: str | None = None
    answered_at: float | None = None


@attrs.define
class _QueuedFault:
    fault: Fault
    remaining: int


@attrs.frozen
class _Outage:
    status: int
    until: float
    body: bytes
    headers: Mapping[str, str]


@attrs.define
class _Chaos:
    rate: float
    rng: random.Random
    faults: tuple[Fault, ...]

    def draw(self) -> Fault | None:
        if self.rng.random() >= self.rate:
            return None
        return self.rng.choice(self.faults)


class _ApiError(Exception):
    """An error answer of the fake API, raised inside the request handling."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.body = _error_body(message, type_=type_, param=param, code=code)
        self.headers = headers or {}


def _error_body(
    message: str, *, type_: str, param: str | None = None, code: str | None = None
) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def _fault_error_body(status: int, code: str | None) -> bytes:
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    if code is not None and code in _CODE_ERRORS:
        type_, message = _CODE_ERRORS[code]
    elif status in _STATUS_ERRORS:
        type_, message = _STATUS_ERRORS[status]
    else:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        message = _phrase(status) + "."
    return _error_body(message, type_=type_, code=code)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _html_body(status: int) -> bytes:
    if status == 200:
        return (
            b"<!DOCTYPE html>\n<html><head><title>Sign in to continue</title></head>\n"
            b"<body><h1>Network login required</h1>"
            b"<p>Please sign in to access the internet.</p></body></html>\n"
        )
    title = f"{status} {_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        f"</body>\r\n</html>\r\n"
    ).encode()


def _chaos_fault(kind: str, slow_delay: float, retry_after_ms: int) -> Fault:
    if kind == "drop":
        return Fault(drop=True)
    if kind == "truncate":
        return Fault(truncate=True)
    if kind == "not_json":
        return Fault(not_json=True)
    if kind == "slow":
        return Fault(delay=slow_delay)
    if kind.isdigit() and kind.isascii():
        status = int(kind)
        headers = {"retry-after-ms": str(retry_after_ms)} if status == 429 else {}
        return Fault(status=status, headers=headers)
    raise ValueError(f"unknown chaos kind {kind!r}; expected a status or one of {CHAOS_KINDS}")


def _resolve(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _close_transport(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


@attrs.frozen
class RateLimit:
    """A token bucket for `FakeServer`: what a rate-limited server does.

    The bucket holds ``burst`` requests and refills at ``requests_per_second``; a listing
    request that finds it empty gets a 429 (``rate_limit_exceeded``) with ``retry-after-ms``
    and ``retry-after`` (whole seconds, rounded up) saying when the next request would pass.

    Every listing answer carries rate-limit headers in the style ``headers`` names:

    * ``"bucket"``: ``x-ratelimit-limit-requests`` is the burst, ``-remaining-requests`` the
      requests left in the bucket, ``-reset-requests`` the time until it is full again, as a
      Go duration (``180ms``, ``1.5s``);
    * ``"per-minute"``: as OpenAI words them, the limit is requests per minute
      (``requests_per_second * 60``), the remaining count is that limit less what the bucket
      lacks, and the reset is written like ``1m30s`` or ``20ms``;
    * ``"none"``: no rate-limit headers at all, only the 429s and their retry hints.
    """

    requests_per_second: float = attrs.field()
    burst: int = attrs.field(default=20)
    headers: str = attrs.field(default="bucket")

    @requests_per_second.validator
    def _check_rate(self, _attribute: object, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
            raise ValueError(f"requests_per_second must be a number > 0, got {value!r}")

    @burst.validator
    def _check_burst(self, _attribute: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"burst must be an integer >= 1, got {value!r}")

    @headers.validator
    def _check_headers(self, _attribute: object, value: str) -> None:
        if value not in ("bucket", "per-minute", "none"):
            raise ValueError(f"headers must be 'bucket', 'per-minute' or 'none', got {value!r}")


def go_duration(seconds: float) -> str:
    """``seconds`` written as rate-limit headers write durations: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000)) if seconds > 0 else 0}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class _Bucket:
    """The state of a `RateLimit` on one server."""

    __slots__ = ("at", "limit", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.at = time.monotonic()

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        """Take a token if there is one: (allowed, the headers to answer with)."""
        limit = self.limit
        rate = limit.requests_per_second
        self.tokens = min(float(limit.burst), self.tokens + (now - self.at) * rate)
        self.at = now
        allowed = self.tokens >= 1
        if allowed:
            self.tokens -= 1
        lacking = limit.burst - self.tokens
        headers: dict[str, str] = {}
        if limit.headers == "bucket":
            headers = {
                "x-ratelimit-limit-requests": str(limit.burst),
                "x-ratelimit-remaining-requests": str(math.floor(self.tokens)),
                "x-ratelimit-reset-requests": go_duration(lacking / rate),
            }
        elif limit.headers == "per-minute":
            per_minute = round(rate * 60)
            headers = {
                "x-ratelimit-limit-requests": str(per_minute),
                "x-ratelimit-remaining-requests": str(max(0, per_minute - math.ceil(lacking))),
                "x-ratelimit-reset-requests": go_duration(lacking / rate),
            }
        if not allowed:
            wait = (1 - self.tokens) / rate
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            headers["retry-after"] = str(max(1, math.ceil(wait)))
        return allowed, headers


class FakeServer:
    """An in-process fake of ``GET /v1/threads/{thread_id}/runs`` (Assistants API v2).

    It is a real aiohttp server listening on ``host:port`` (port 0 picks a free one), so clients
    talk to it over TCP exactly as to the real service: point them at `base_url`. It checks the
    ``Authorization: Bearer`` key (``api_key``; ``None`` accepts any non-empty key) and, with
    ``require_beta_header``, the ``OpenAI-Beta: assistants=v2`` header; validates ``limit``
    (1..``max_limit``, default 20), ``order`` (``asc``/``desc``, default ``desc``) and the
    ``after``/``before`` cursors; and pages through the runs of `threads` like the real service.
    Errors have the spec's ``ErrorResponse`` shape and every answer has an ``x-request-id``.

    Knobs for lax "compatible" servers: ``send_page_ids=False`` leaves ``first_id``/``last_id``
    out of pages, ``send_request_id=False`` leaves out ``x-request-id``, and ``force_page_size``
    ignores ``limit`` and always serves pages of that size. ``quirks`` (a `Quirks`, or the name
    of one of `Quirks.MODES`) reproduces the quirks of real compatible servers: unstable
    cursors, ignored parameters, no ``has_more``, other error shapes. All options are plain
    attributes and may be changed while the server runs.

    A server people meet: ``rate_limit=RateLimit(100, burst=20)`` (or ``(100, 20)``) limits the
    listing requests with a token bucket, answering 429s and rate-limit headers as a
    rate-limited server does; ``latency=0.05`` makes every answer wait 50 ms first, as a
    distant server's would.

    Misbehaviour on demand: `add_fault` queues `Fault` objects, `chaos` injects random ones,
    `outage` answers every listing request with one error for a while (or from now on), and
    `fail_threads` makes some threads fail for good. Every request is recorded in `requests`
    (with the server's arrival time); `in_flight`/`max_in_flight` count concurrent ones.

    Use it as ``async with FakeServer() as server: ...`` or call `start` and `close`.
    """

    def __init__(
        self,
        *,
        quirks: Quirks | str | None = None,
        api_key: str | None = "sk-test-key",
        host: str = "127.0.0.1",
        port: int = 0,
        require_beta_header: bool = True,
        send_page_ids: bool = True,
        send_request_id: bool = True,
        force_page_size: int | None = None,
        max_limit: int = 100,
        rate_limit: RateLimit | tuple[float, int] | None = None,
        latency: float = 0.0,
    ) -> None:
        if not (isinstance(latency, (int, float)) and 0 <= latency < float("inf")):
            raise ValueError(f"latency must be a number of seconds >= 0, got {latency!r}")
        if isinstance(rate_limit, tuple):
            rate_limit = RateLimit(*rate_limit)
        if force_page_size is not None and force_page_size < 1:
            raise ValueError(f"force_page_size must be at least 1, got {force_page_size}")
        if max_limit < 1:
            raise ValueError(f"max_limit must be at least 1, got {max_limit}")
        #: How this server departs from the real API (see `Quirks`); may be replaced any time.
        self.quirks: Quirks = Quirks.of(quirks)
        self.api_key = api_key
        self.host = host
        self.port = port
        self.require_beta_header = require_beta_header
        self.send_page_ids = send_page_ids
        self.send_request_id = send_request_id
        self.force_page_size = force_page_size
        self.max_limit = max_limit
        #: The token bucket limiting the listing requests (``None``: no limit).
        self.rate_limit: RateLimit | None = rate_limit
        #: Seconds every answer waits before it is made (a distant server).
        self.latency = float(latency)
        self._bucket: _Bucket | None = None
        #: Runs per thread id, in creation (insertion) order. Served as stored.
        self.threads: dict[str, list[dict[str, Any]]] = {}
        #: Every request received, in arrival order.
        self.requests: list[RecordedRequest] = []
        #: Requests being handled right now.
        self.in_flight = 0
        #: Peak of `in_flight` since start or `reset_stats`.
        self.max_in_flight = 0
        self._faults: list[_QueuedFault] = []
        self._chaos: _Chaos | None = None
        #: Threads that always fail: thread id -> the status they answer (see `fail_threads`).
        self.failing_threads: dict[str, int] = {}
        self._outage: _Outage | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._sleepers: set[asyncio.Future[bool]] = set()
        self._base_url: str | None = None
        #: Socket-free requests being answered (`handle`): id -> the failure to report.
        self._socketless: dict[int, str | None] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening. Raises ``RuntimeError`` if the server is already running."""
        if self._runner is not None:
            raise RuntimeError("the fake server is already running")
        self._closing = False
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{host}:{port}/v1"

    async def close(self) -> None:
        """Stop the server and close every connection; requests still waiting out a ``delay``
        are answered by closing their connection. Safe to call more than once."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for waiter in list(self._sleepers):
            _resolve(waiter, False)
        await runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The API root to give clients, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._base_url is None:
            raise RuntimeError("the fake server has not been started")
        return self._base_url

    def url_for(self, thread_id: str) -> str:
        """The full URL of the runs list of ``thread_id``."""
        return f"{self.base_url}/threads/{thread_id}/runs"

    # -- data --------------------------------------------------------------------------------

    def add_thread(self, thread_id: str, runs: Iterable[Mapping[str, Any]] = ()) -> None:
        """Create thread ``thread_id`` with ``runs`` given in creation order (oldest first).

        Raises ``ValueError`` if the thread exists. See `add_runs` for what a run needs.
        """
        if thread_id in self.threads:
            raise ValueError(f"thread {thread_id!r} already exists")
        self.threads[thread_id] = []
        self.add_runs(thread_id, runs)

    def add_runs(self, thread_id: str, runs: Iterable[Mapping[str, Any]]) -> None:
        """Append ``runs`` (oldest first) to thread ``thread_id``, creating it if needed.

        Each run needs a string ``id`` that is new in the thread (else ``ValueError``) and an
        integer ``created_at`` (else ``TypeError``); everything else is served exactly as given,
        unknown fields included. The runs are copied (shallowly) into plain dicts and must be
        serialisable by orjson.
        """
        thread = self.threads.setdefault(thread_id, [])
        seen = {run["id"] for run in thread}
        new: list[dict[str, Any]] = []
        for run in runs:
            stored = dict(run)
            run_id = stored.get("id")
            created_at = stored.get("created_at")
            if not isinstance(run_id, str):
                raise TypeError(f"a run needs a string 'id', got {run_id!r}")
            if not isinstance(created_at, int) or isinstance(created_at, bool):
                raise TypeError(f"run {run_id!r} needs an integer 'created_at'")
            if run_id in seen:
                raise ValueError(f"run {run_id!r} is already in thread {thread_id!r}")
            orjson.dumps(stored)  # fail here rather than in a request
            seen.add(run_id)
            new.append(stored)
        thread.extend(new)

    def seed(
        self,
        n_threads: int,
        runs_per_thread: int | Callable[[int], int],
        *,
        seed: int = 0,
        prefix: str = "thread_",
    ) -> list[str]:
        """Add ``n_threads`` threads of realistic runs (see `make_run`) and return their ids.

        ``runs_per_thread`` is a count, or a function of the thread's position (0-based) giving
        its count. The same arguments always produce the same threads, ids and runs.
        """
        rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        thread_ids: list[str] = []
        for position in range(n_threads):
            thread_id = make_id(prefix, "seed", seed, position)
            count = runs_per_thread(position) if callable(runs_per_thread) else runs_per_thread
            self.add_thread(thread_id, [make_run(thread_id, i, rng=rng) for i in range(count)])
            thread_ids.append(thread_id)
        return thread_ids

    def expected_ids(self, thread_id: str, order: str = "desc") -> list[str]:
        """The ids of ``thread_id``'s runs in listing order (``"asc"`` or ``"desc"``)."""
        if order not in _ORDERS:
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
        return [run["id"] for run in _ordered(self.threads[thread_id], order)]

    # -- faults and stats --------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue ``fault``. Each request takes the first queued fault that matches it (by
        ``thread_id``; ``None`` matches every request) and uses up one of its ``times``."""
        self._faults.append(_QueuedFault(fault, fault.times))

    @property
    def pending_faults(self) -> list[Fault]:
        """The queued faults not used up yet, in queue order."""
        return [queued.fault for queued in self._faults]

    def clear_faults(self) -> None:
        """Forget every queued fault (chaos stays as it is)."""
        self._faults.clear()

    def fail_threads(self, thread_ids: Iterable[str], status: int = 404) -> None:
        """Make every listing request for ``thread_ids`` answer ``status`` (an error status,
        400 to 599) from now on, as a thread that was deleted (404) or that the server
        refuses (400) does, whatever faults or chaos say. Their runs stay in `threads`.
        `failing_threads` holds them; remove an id from it to heal that thread."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be an iterable of thread ids, not one string")
        for thread_id in thread_ids:
            self.failing_threads[thread_id] = status

    def outage(
        self,
        seconds: float = math.inf,
        *,
        status: int = 503,
        headers: Mapping[str, str] | None = None,
        error_code: str | None = None,
    ) -> None:
        """Answer every listing request with ``status`` (an error body in the spec's shape,
        ``error_code`` as its ``error.code``, ``headers`` added) for ``seconds`` from now, by
        the server's clock; the default, ``math.inf``, lasts until `end_outage`. It comes
        before the rate limit, failing threads, queued faults and chaos (none of which is used
        up meanwhile). ``outage(10)`` is a 10 s outage; ``outage(status=401)`` a key revoked
        from now on. A new call replaces the current outage."""
        if not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status!r}")
        until = time.monotonic() + seconds
        body = _fault_error_body(status, error_code)
        self._outage = _Outage(status=status, until=until, body=body, headers=dict(headers or {}))

    def end_outage(self) -> None:
        """End the current `outage` now (nothing if there is none)."""
        self._outage = None

    @property
    def outage_active(self) -> bool:
        """Whether an `outage` answers requests right now."""
        return self._current_outage(time.monotonic()) is not None

    def _current_outage(self, now: float) -> _Outage | None:
        outage = self._outage
        if outage is not None and now >= outage.until:
            self._outage = outage = None
        return outage

    def chaos(
        self,
        rate: float,
        *,
        seed: int = 0,
        kinds: Sequence[str] = CHAOS_KINDS,
        slow_delay: float = 0.05,
        retry_after_ms: int = 1,
    ) -> None:
        """Give each request that no queued fault matches a random fault with probability
        ``rate``, drawn from a ``random.Random(seed)``: the same requests in the same order get
        the same faults. ``kinds`` are the faults to pick from: status codes as strings (429s
        carry ``retry-after-ms: retry_after_ms``), ``"drop"``, ``"truncate"``, ``"not_json"``
        and ``"slow"`` (a ``slow_delay`` seconds delay). ``rate`` 0 turns chaos off."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, got {rate}")
        faults = tuple(_chaos_fault(kind, slow_delay, retry_after_ms) for kind in kinds)
        if rate == 0:
            self._chaos = None
            return
        if not faults:
            raise ValueError("chaos needs at least one kind")
        self._chaos = _Chaos(rate, random.Random(seed), faults)  # noqa: S311 - not for secrets

    def reset_stats(self) -> None:
        """Forget the recorded requests and restart `max_in_flight` from `in_flight`."""
        self.requests.clear()
        self.max_in_flight = self.in_flight

    def _take_fault(self, thread_id: str | None) -> Fault | None:
        for position, queued in enumerate(self._faults):
            wanted = queued.fault.thread_id
            if wanted is None or wanted == thread_id:
                queued.remaining -= 1
                if queued.remaining <= 0:
                    del self._faults[position]
                return queued.fault
        return self._chaos.draw() if self._chaos is not None else None

    # -- request handling --------------------------------------------------------------------

    async def handle(self, request: Request) -> MockResponse:
        """Answer one client request without sockets: the server as a
        :class:`MockTransport` handler.

        ``Client(api_key, base_url="https://fake.test/v1", transport=MockTransport(server.handle))``
        lists the server's threads, faults and chaos included, with nothing listening: the
        server need not be started. A dropped connection or a cut body comes back as
        :meth:`MockResponse.drop` / :meth:`MockResponse.cut`. Requests are recorded as over
        HTTP.
        """
        path = URL(request.url, encoded=True).raw_path_qs
        mocked = make_mocked_request(request.method, path, headers=dict(request.headers))
        self._socketless[id(mocked)] = None
        try:
            response = await self._handle(mocked)
        finally:
            failure = self._socketless.pop(id(mocked))
        if failure == "drop":
            return MockResponse.drop()
        assert isinstance(response, web.Response)  # noqa: S101 - no streaming without a socket
        body = response.body if isinstance(response.body, bytes) else b""
        if failure == "cut":
            return MockResponse.cut(response.status, body=body)
        return MockResponse(response.status, body=body, headers=response.headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        # Match the raw path, then decode the segment: a thread id may contain an encoded "/".
        raw_path = request.raw_path.partition("?")[0]
        match = _RUNS_PATH.fullmatch(raw_path)
        thread_id = unquote(match["thread_id"]) if match else None
        down = thread_id is not None and (
            thread_id in self.failing_threads or self._current_outage(time.monotonic()) is not None
        )
        fault = None if down else self._take_fault(thread_id)
        request_id = f"req_{os.urandom(16).hex()}"
        record = RecordedRequest(
            method=request.method,
            path=raw_path,
            thread_id=thread_id,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            status=-1,
            fault=fault,
            received_at=time.monotonic(),
            request_id=request_id if self.send_request_id else None,
        )
        self.requests.append(record)
        status = 0
        try:
            response, status = await self._respond(request, thread_id, fault, request_id)
        except Exception:
            _log.exception("fake server failed on %s %s", request.method, request.path_qs)
            status = 500
            body = _fault_error_body(500, None)
            response = self._response(500, body, request_id)
        finally:
            self.in_flight -= 1
            self._settle(record, status)
        return response

    def _settle(self, record: RecordedRequest, status: int) -> None:
        requests = self.requests
        for position in range(len(requests) - 1, -1, -1):
            if requests[position] is record:
                answered = time.monotonic() if status else None
                requests[position] = attrs.evolve(record, status=status, answered_at=answered)
                return

    async def _respond(
        self,
        request: web.Request,
        thread_id: str | None,
        fault: Fault | None,
        request_id: str,
    ) -> tuple[web.StreamResponse, int]:
        extra: Mapping[str, str] = {}
        if self.latency and not await self._sleep(self.latency):
            return self._dropped(request), 0  # the server is closing
        outage = self._current_outage(time.monotonic()) if thread_id is not None else None
        if outage is not None:
            return self._response(outage.status, outage.body, request_id, outage.headers), (
                outage.status
            )
        if self.rate_limit is not None and thread_id is not None:
            if self._bucket is None or self._bucket.limit is not self.rate_limit:
                self._bucket = _Bucket(self.rate_limit)
            allowed, extra = self._bucket.take(time.monotonic())
            if not allowed:
                body = _fault_error_body(429, None)
                return self._response(429, body, request_id, extra), 429
        failing = self.failing_threads.get(thread_id) if thread_id is not None else None
        if failing is not None:
            return self._response(failing, _fault_error_body(failing, None), request_id, extra), (
                failing
            )
        if fault is not None:
            if fault.delay > 0 and not await self._sleep(fault.delay):
                return self._dropped(request), 0  # the server is closing
            if fault.drop:
                return self._dropped(request), 0
            extra = {**extra, **fault.headers}
            if fault.not_json:
                status = fault.status or 200
                body = _html_body(status)
                return self._response(status, body, request_id, extra, _HTML), status
            if fault.body is not None:
                status = fault.status or 200
                return self._response(status, fault.body, request_id, extra), status
            if fault.status is not None:
                body = _fault_error_body(fault.status, fault.error_code)
                return self._response(fault.status, body, request_id, extra), fault.status
        try:
            status, body = 200, self._list_runs(request, thread_id)
        except _ApiError as error:
            status, body = self.quirks.error(error)
            extra = {**error.headers, **extra}
        if fault is not None and fault.truncate:
            return await self._truncated(request, status, body, request_id, extra), status
        return self._response(status, body, request_id, extra), status

    async def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; ``False`` if the server started closing meanwhile.

        A bare future and a timer rather than ``wait_for(event.wait())``, which would show up
        as one more task in ``asyncio.all_tasks()`` per delayed request.
        """
        if self._closing:
            return False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(delay, _resolve, waiter, True)
        self._sleepers.add(waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._sleepers.discard(waiter)

    def _headers(
        self, request_id: str, extra: Mapping[str, str], content_type: str
    ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers["Content-Type"] = content_type
        if self.send_request_id and self.quirks.request_ids:
            headers["x-request-id"] = request_id
        headers.update(extra)
        return headers

    def _response(
        self,
        status: int,
        body: bytes,
        request_id: str,
        extra: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> web.Response:
        headers = self._headers(request_id, extra or {}, content_type)
        return web.Response(status=status, body=body, headers=headers)

    def _dropped(self, request: web.Request) -> web.StreamResponse:
        if id(request) in self._socketless:
            self._socketless[id(request)] = "drop"
            return web.Response(status=499)
        # Closing the transport first makes aiohttp's attempt to send this response fail with a
        # ConnectionResetError, which it treats as a client disconnect: nothing is logged.
        _close_transport(request)
        response = web.Response(status=499)
        response.force_close()
        return response

    async def _truncated(
        self,
        request: web.Request,
        status: int,
        body: bytes,
        request_id: str,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        headers = self._headers(request_id, extra, "application/json")
        if id(request) in self._socketless:
            self._socketless[id(request)] = "cut"
            return web.Response(status=status, body=body[: len(body) // 2], headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        response.force_close()
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:  # the client left first: nothing to cut, nothing to log
            _close_transport(request)
            return response
        # close() sends what is buffered, then the FIN; aiohttp's write_eof() afterwards has
        # nothing left to write, so the short body is all the client gets.
        _close_transport(request)
        return response

    # -- the API -----------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if self.api_key is not None and token != self.api_key:
            shown = f"{token[:3]}{'*' * max(len(token) - 7, 1)}{token[-4:]}"
            raise _ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    @staticmethod
    def _check_beta(request: web.Request) -> None:
        values = [
            token.strip().lower()
            for header in request.headers.getall("OpenAI-Beta", [])
            for token in header.split(",")
        ]
        if "assistants=v2" in values:
            return
        if "assistants=v1" in values:
            message = (
                "The v1 Assistants API has been deprecated. Please try again by setting the "
                "header 'OpenAI-Beta: assistants=v2'."
            )
        else:
            message = (
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                "Please try again by setting the header 'OpenAI-Beta: assistants=v2'."
            )
        raise _ApiError(400, message, code="invalid_beta")

    def _limit(self, request: web.Request) -> int:
        if self.force_page_size is not None:
            return self.force_page_size
        raw = request.query.get("limit")
        if raw is None:
            return min(_DEFAULT_LIMIT, self.max_limit)
        if not _INTEGER.fullmatch(raw):
            raise _ApiError(
                400,
                f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
                param="limit",
                code="invalid_type",
            )
        limit = int(raw)
        if limit < 1:
            raise _ApiError(
                400,
                f"Invalid 'limit': integer below minimum value. Expected a value >= 1, "
                f"but got {limit} instead.",
                param="limit",
                code="integer_below_min_value",
            )
        if limit > self.max_limit:
            raise _ApiError(
                400,
                f"Invalid 'limit': integer above maximum value. Expected a value <= "
                f"{self.max_limit}, but got {limit} instead.",
                param="limit",
                code="integer_above_max_value",
            )
        return limit

    def _list_runs(self, request: web.Request, thread_id: str | None) -> bytes:
        self._authenticate(request)
        if thread_id is None:
            raise _ApiError(404, f"Invalid URL ({request.method} {request.raw_path})")
        if request.method != "GET":
            raise _ApiError(
                405,
                f"Method {request.method} is not supported by this fake server for "
                f"{request.raw_path}; only GET (list runs) is.",
                headers={"Allow": "GET"},
            )
        if self.require_beta_header:
            self._check_beta(request)
        quirks = self.quirks
        if quirks.ignore_params:
            return quirks.everything(self.threads.get(thread_id), thread_id)
        limit = self._limit(request)
        order = request.query.get("order", "desc")
        if order not in _ORDERS:
            raise _ApiError(
                400,
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        thread = self.threads.get(thread_id)
        if thread is None:
            if quirks.unknown_thread == "empty":
                return quirks.page([], has_more=False, page_ids=self.send_page_ids)
            raise _ApiError(404, f"No thread found with id '{thread_id}'.")
        if quirks.cursor != "position" or quirks.desc_ties_in_insertion_order:
            return quirks.list_runs(
                request,
                thread=thread,
                thread_id=thread_id,
                order=order,
                limit=limit,
                page_ids=self.send_page_ids,
            )
        runs = _ordered(thread, order)
        after = self._cursor(request, runs, thread_id, "after")
        before = self._cursor(request, runs, thread_id, "before")
        if before is None:
            start = 0 if after is None else after + 1
            page = runs[start : start + limit]
            has_more = start + limit < len(runs)
        elif after is None:
            start = max(0, before - limit)
            page = runs[start:before]
            has_more = start > 0
        else:
            window = runs[after + 1 : before]
            page = window[:limit]
            has_more = len(window) > limit
        return quirks.page(page, has_more=has_more, page_ids=self.send_page_ids)

    @staticmethod
    def _cursor(
        request: web.Request, runs: list[dict[str, Any]], thread_id: str, name: str
    ) -> int | None:
        value = request.query.get(name)
        if value is None:
            return None
        for position, run in enumerate(runs):
            if run["id"] == value:
                return position
        raise _ApiError(
            400,
            f"Invalid '{name}': no run found with id '{value}' in thread '{thread_id}'.",
            param=name,
        )


def _ordered(runs: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """``runs`` by ``created_at`` (ties in insertion order) for asc, that reversed for desc."""
    ascending = sorted(runs, key=lambda run: run["created_at"])
    if order == "desc":
        ascending.reverse()
    return ascending


# -- quirks of compatible servers ------------------------------------------------------------------


@attrs.frozen
class Quirks:
    """How a `FakeServer` departs from the real API, as Assistants-compatible servers do.

    The default departs in nothing. ``FakeServer(quirks=Quirks(...))`` or
    ``FakeServer(quirks="tie-unstable-cursor")`` (a name of `Quirks.MODES`) sets them:

    * ``desc_ties_in_insertion_order``: runs are sorted by ``created_at`` and runs created in
      the same second keep their insertion order even under ``order=desc``;
    * ``cursor``: how ``after``/``before`` are applied: ``"position"`` (right: the runs that
      follow or precede the cursor in the listing), ``"id"`` (compared by creation sequence,
      as an id that sorts in creation order, whatever the listing's sort), or ``"created_at"``
      (compared by ``created_at``: the runs sharing the cursor's second are skipped);
    * ``ignore_params``: ``limit``, ``order``, ``after`` and ``before`` are ignored: every run,
      ascending, ``has_more`` false, no ``first_id``/``last_id``;
    * ``has_more``: ``False`` leaves ``has_more`` out of every page;
    * ``unknown_thread``: ``"404"``, or ``"empty"`` for a 200 with an empty list;
    * ``errors``: the error body shape: ``"openai"`` (``{"error": {"message": ...}}``),
      ``"fastapi"`` (``{"detail": "..."}``, and 422 with ``{"detail": [{"msg": ...}]}`` for a
      bad parameter) or ``"fastify"`` (``{"statusCode", "error", "message"}``);
    * ``request_ids``: ``False`` sends no ``x-request-id``;
    * ``page_ids``: ``False`` leaves ``first_id``/``last_id`` out;
    * ``float_created_at``: ``created_at`` is sent as a float (``1714000000.0``).
    """

    desc_ties_in_insertion_order: bool = False
    cursor: Literal["position", "id", "created_at"] = "position"
    ignore_params: bool = False
    has_more: bool = True
    unknown_thread: Literal["404", "empty"] = "404"
    errors: Literal["openai", "fastapi", "fastify"] = "openai"
    request_ids: bool = True
    page_ids: bool = True
    float_created_at: bool = False

    #: The quirks of three kinds of Assistants-compatible servers, by name, for
    #: ``FakeServer(quirks=NAME)``: ``"tie-unstable-cursor"``, ``"ignores-parameters"`` and
    #: ``"no-has-more"``.
    MODES: ClassVar[Mapping[str, Quirks]]

    def __attrs_post_init__(self) -> None:
        for name, value, allowed in (
            ("cursor", self.cursor, ("position", "id", "created_at")),
            ("unknown_thread", self.unknown_thread, ("404", "empty")),
            ("errors", self.errors, ("openai", "fastapi", "fastify")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    @classmethod
    def of(cls, quirks: Quirks | str | None) -> Quirks:
        """``quirks`` itself, the `MODES` entry it names, or no quirks for ``None``."""
        if quirks is None:
            return cls()
        if isinstance(quirks, Quirks):
            return quirks
        if isinstance(quirks, str) and quirks in cls.MODES:
            return cls.MODES[quirks]
        raise ValueError(f"quirks must be a Quirks or one of {sorted(cls.MODES)}, got {quirks!r}")

    # What the server does with them.

    def _served(self, run: dict[str, Any]) -> dict[str, Any]:
        if self.float_created_at and isinstance(run.get("created_at"), int):
            return {**run, "created_at": float(run["created_at"])}
        return run

    def page(self, runs: list[dict[str, Any]], *, has_more: bool, page_ids: bool) -> bytes:
        """The body of a page holding ``runs``."""
        data = [self._served(run) for run in runs]
        body: dict[str, Any] = {"object": "list", "data": data}
        if page_ids and self.page_ids:
            body["first_id"] = data[0]["id"] if data else None
            body["last_id"] = data[-1]["id"] if data else None
        if self.has_more:
            body["has_more"] = has_more
        return orjson.dumps(body)

    def everything(self, thread: list[dict[str, Any]] | None, thread_id: str) -> bytes:
        """The answer of a server that ignores the query: every run, ascending, in one page."""
        if thread is None:
            if self.unknown_thread == "empty":
                return orjson.dumps({"object": "list", "data": [], "has_more": False})
            raise _ApiError(404, f"No thread found with id '{thread_id}'.")
        data = [self._served(run) for run in _ordered(thread, "asc")]
        body: dict[str, Any] = {"object": "list", "data": data}
        if self.has_more:
            body["has_more"] = False
        return orjson.dumps(body)

    def list_runs(
        self,
        request: web.Request,
        *,
        thread: list[dict[str, Any]],
        thread_id: str,
        order: str,
        limit: int,
        page_ids: bool,
    ) -> bytes:
        """A page where the sort or the cursors are quirky."""
        sequence = {id(run): position for position, run in enumerate(thread)}
        if self.desc_ties_in_insertion_order:
            # A stable sort on created_at alone: ties stay in insertion order, both ways.
            sign = -1 if order == "desc" else 1
            runs = sorted(thread, key=lambda run: sign * run["created_at"])
        else:
            runs = _ordered(thread, order)
        position = {id(run): place for place, run in enumerate(runs)}
        keys: dict[str, Callable[[dict[str, Any]], float]] = {
            "position": lambda run: float(position[id(run)]),
            "id": lambda run: float(sequence[id(run)]),
            "created_at": lambda run: float(run["created_at"]),
        }
        key = keys[self.cursor]
        # "Follows" in the listing: a higher position, or, compared by key, later for asc and
        # earlier for desc (the position itself is always "later").
        sign = 1 if self.cursor == "position" or order == "asc" else -1
        window = runs
        cursors: dict[str, dict[str, Any]] = {}
        for name in ("after", "before"):
            value = request.query.get(name)
            if value is None:
                continue
            found = next((run for run in thread if run["id"] == value), None)
            if found is None:
                raise _ApiError(
                    400,
                    f"Invalid '{name}': no run found with id '{value}' in thread '{thread_id}'.",
                    param=name,
                )
            cursors[name] = found
        if "after" in cursors:
            mark = sign * key(cursors["after"])
            window = [run for run in window if sign * key(run) > mark]
        if "before" in cursors:
            mark = sign * key(cursors["before"])
            window = [run for run in window if sign * key(run) < mark]
        if "before" in cursors and "after" not in cursors:
            page = window[max(0, len(window) - limit) :]
            has_more = len(window) > limit
        else:
            page = window[:limit]
            has_more = len(window) > limit
        return self.page(page, has_more=has_more, page_ids=page_ids)

    def error(self, error: _ApiError) -> tuple[int, bytes]:
        """The status and body of an error answer in this server's shape."""
        status, message = error.status, str(error)
        if self.errors == "fastify":
            body = {"statusCode": status, "error": _phrase(status), "message": message}
            return status, orjson.dumps(body)
        if self.errors == "fastapi":
            param = error.param
            if param is not None and status == 400:
                detail = [
                    {"type": "value_error", "loc": ["query", param], "msg": message, "input": None}
                ]
                return 422, orjson.dumps({"detail": detail})
            return status, orjson.dumps({"detail": message})
        return status, error.body


Quirks.MODES = {
    # Sorts by created_at (ties in insertion order, even under desc) but applies the cursor
    # by id: its desc pages overlap where runs share a second. Fastify-style errors.
    "tie-unstable-cursor": Quirks(
        desc_ties_in_insertion_order=True, cursor="id", errors="fastify", request_ids=False
    ),
    # Ignores limit, order, after and before: every run, ascending, in one page.
    "ignores-parameters": Quirks(
        ignore_params=True, errors="fastapi", request_ids=False, float_created_at=True
    ),
    # Never sets has_more; its cursor skips the runs sharing the cursor's second; an unknown
    # thread is a 200 with an empty list.
    "no-has-more": Quirks(
        has_more=False,
        cursor="created_at",
        unknown_thread="empty",
        errors="fastapi",
        request_ids=False,
    ),
}
