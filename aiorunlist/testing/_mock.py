"""A socket-free transport: answers come from a function of yours."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from .._text import shown
from .._transport import Request, Response, Transport, too_large
from ..exceptions import APIConnectionError, APITimeoutError

__all__ = ["MockResponse", "MockTransport"]

Failure = Literal["drop", "cut", "timeout"]


class MockResponse:
    """What a :class:`MockTransport` handler returns: an answer, or a transport failure.

    ``MockResponse(200, body={"object": "list", ...})`` answers with that JSON;
    ``body`` may also be ``bytes`` (sent as they are) or a ``str`` (sent as UTF-8).
    ``headers`` are looked up case-insensitively, as on a real connection.

    The failures a real network has, without one: :meth:`drop` (the connection closed
    before an answer), :meth:`cut` (the body ended early) and :meth:`timeout`.
    """

    __slots__ = ("body", "failure", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        *,
        body: bytes | str | object = b"",
        headers: Mapping[str, str] | None = None,
        failure: Failure | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status from 100 to 599, got {status!r}")
        if failure not in (None, "drop", "cut", "timeout"):
            raise ValueError(f"failure must be 'drop', 'cut', 'timeout' or None, got {failure!r}")
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = orjson.dumps(body)
        self.status = status
        self.body = data
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers or {}))
        self.failure = failure

    @classmethod
    def drop(cls) -> MockResponse:
        """The connection closed before any answer (retried, as a dropped connection is)."""
        return cls(failure="drop")

    @classmethod
    def cut(cls, status: int = 200, *, body: bytes | str | object = b"") -> MockResponse:
        """The answer started, then its body was cut short (retried)."""
        return cls(status, body=body, failure="cut")

    @classmethod
    def timeout(cls) -> MockResponse:
        """No answer in time (retried, as a timeout is)."""
        return cls(failure="timeout")

    def __repr__(self) -> str:
        kind = f", failure={self.failure!r}" if self.failure else ""
        return f"MockResponse({self.status}, body=<{len(self.body)} bytes>{kind})"


Handler = Callable[[Request], "MockResponse | Awaitable[MockResponse]"]


class MockTransport(Transport):
    """A transport that calls ``handler(request)`` instead of the network.

    ``handler`` may be a plain function or a coroutine function; it gets the
    :class:`~aiorunlist.Request` (``.method``, ``.url`` with its query, ``.headers``,
    ``.thread_id``) and returns a :class:`MockResponse`. Every request is also kept in
    :attr:`requests`. Use it as ``Client(api_key, transport=MockTransport(handler))``::

        def handler(request):
            return MockResponse(200, body={"object": "list", "data": [], "has_more": False})

    Redirects, retries, pacing and decoding are the client's own, so they behave exactly as
    over a real connection; :class:`FakeServer` is the choice when a test needs real sockets.
    """

    def __init__(self, handler: Handler) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        self.handler = handler
        #: Every request sent, oldest first.
        self.requests: list[Request] = []
        #: Whether the client closed the transport.
        self.closed = False

    async def send(self, request: Request) -> Response:
        """Ask the handler; turn its failures into the client's connection errors."""
        self.requests.append(request)
        answer: Any = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, MockResponse):
            raise TypeError(f"a MockTransport handler must return a MockResponse, got {answer!r}")
        thread_id = request.thread_id
        if answer.failure == "drop":
            raise APIConnectionError(
                f"listing runs of thread {shown(thread_id)}: the connection closed before an "
                "answer (ServerDisconnectedError)",
                thread_id=thread_id,
            )
        if answer.failure == "timeout":
            raise APITimeoutError(
                f"listing runs of thread {shown(thread_id)} timed out", thread_id=thread_id
            )
        if answer.failure == "cut":
            raise APIConnectionError(
                f"listing runs of thread {shown(thread_id)}: the response body was cut short",
                thread_id=thread_id,
            )
        if len(answer.body) > request.max_bytes:
            raise too_large(request, len(answer.body))
        return Response(answer.status, answer.headers, answer.body)

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True
