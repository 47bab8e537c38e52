"""The transport seam: one HTTP exchange, and the only module that speaks aiohttp.

A :class:`Transport` sends one :class:`Request` and returns one :class:`Response` (status,
headers, body bytes), or raises :class:`~aiorunlist.APIConnectionError` /
:class:`~aiorunlist.APITimeoutError` when no usable answer came. Everything else (retries,
redirects, decoding, pacing) is the client's, so every transport gets the same behaviour.
:class:`AiohttpTransport` is the default; :class:`aiorunlist.testing.MockTransport` answers
from a function, without sockets.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping
from typing import Final

import aiohttp
import attrs
from yarl import URL

from ._text import shown
from .exceptions import APIConnectionError, APITimeoutError, ResponseTooLargeError, RunListError

__all__ = ["AiohttpTransport", "Request", "Response", "Transport"]

_HIDDEN: Final = frozenset({"authorization"})


def _masked(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: ("<hidden>" if k.lower() in _HIDDEN else v) for k, v in headers.items()}


@attrs.frozen(repr=False)
class Request:
    """One request for a transport to send.

    ``url`` is the full, already encoded URL (query included); ``headers`` include the
    ``Authorization`` header, which ``repr`` hides. ``thread_id`` names the thread being
    listed (for error messages); ``max_bytes`` is the largest body the client accepts.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    thread_id: str = ""
    max_bytes: int = 32 * 1024 * 1024

    def __repr__(self) -> str:
        return (
            f"Request(method={self.method!r}, url={self.url!r}, "
            f"headers={_masked(self.headers)!r}, thread_id={shown(self.thread_id)})"
        )


@attrs.frozen(repr=False)
class Response:
    """One answer: its status, headers (looked up case-insensitively) and whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body=<{len(self.body)} bytes>)"


class Transport(abc.ABC):
    """Sends one request and reads its answer (see the module docstring).

    Implement :meth:`send` (and :meth:`aclose` if the transport holds resources) to plug
    another HTTP stack into :class:`~aiorunlist.Client` with ``transport=``. A transport
    follows no redirects: a 3xx comes back as it is, and the client decides.
    """

    @abc.abstractmethod
    async def send(self, request: Request) -> Response:
        """Send ``request`` and return the whole answer.

        Raise :class:`~aiorunlist.APIConnectionError` (or :class:`~aiorunlist.APITimeoutError`)
        when no usable answer came, and :class:`~aiorunlist.ResponseTooLargeError` for a body
        over ``request.max_bytes``. Never let the API key reach an exception.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional for stateless transports
        """Release what the transport holds. The client calls it once, from ``aclose()``."""


def too_large(request: Request, size: int | None) -> ResponseTooLargeError:
    """The error for a body larger than ``request.max_bytes`` (``size`` when announced)."""
    what = f"announces {size} bytes" if size is not None else "is larger than that"
    return ResponseTooLargeError(
        f"listing runs of thread {shown(request.thread_id)}: the response {what}, more than "
        f"max_response_bytes={request.max_bytes}",
        thread_id=request.thread_id,
    )


class AiohttpTransport(Transport):
    """The default transport: one :class:`aiohttp.ClientSession`.

    Without ``session`` the transport creates its own on first use (in the running event
    loop) and closes it in :meth:`aclose`; a borrowed ``session`` is never closed. An aiohttp
    session belongs to one event loop, so using an own session from a second loop raises
    :class:`~aiorunlist.RunListError`.

    :param session: an :class:`aiohttp.ClientSession` to borrow.
    :param timeout: the :class:`aiohttp.ClientTimeout` of each request.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout if timeout is not None else aiohttp.ClientTimeout(total=60)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use (``None`` until the first request of an own session)."""
        return self._session

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RunListError("this Client is closed; create a new one")
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=self._timeout,
            )
            self._loop = asyncio.get_running_loop()
        elif self._owns_session:
            if self._loop is not asyncio.get_running_loop():
                raise RunListError(
                    "this Client was first used in another event loop; an aiohttp session "
                    "belongs to one loop, so create one Client per asyncio.run()"
                )
        elif session.closed:
            raise RunListError(
                "the aiohttp session lent to this Client was closed by its owner; lend an open "
                "session, or let the Client create its own"
            )
        return session

    async def aclose(self) -> None:
        """Close the transport's own session (a borrowed one is left open). Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    async def send(self, request: Request) -> Response:
        """Send one GET with aiohttp; see :meth:`Transport.send`."""
        session = self._get_session()
        thread_id = request.thread_id
        error: RunListError
        cause: BaseException | None = None
        try:
            async with session.request(
                request.method,
                URL(request.url, encoded=True),
                headers=request.headers,
                timeout=self._timeout,
                raise_for_status=False,
                allow_redirects=False,
            ) as resp:
                body = await _read_body(resp, request)
                return Response(resp.status, resp.headers, body)
        except (TimeoutError, asyncio.TimeoutError):
            error = APITimeoutError(
                f"listing runs of thread {shown(thread_id)} timed out", thread_id=thread_id
            )
        except aiohttp.ClientPayloadError as exc:
            cause = exc
            error = APIConnectionError(
                f"listing runs of thread {shown(thread_id)}: the response body was cut short "
                f"({_describe(exc)})",
                thread_id=thread_id,
            )
        except aiohttp.ClientError as exc:
            cause = _safe_cause(exc)
            error = APIConnectionError(
                f"listing runs of thread {shown(thread_id)}: could not reach "
                f"{URL(request.url).origin()} ({type(exc).__name__}: {_describe(exc)})",
                thread_id=thread_id,
            )
        except ValueError as exc:  # yarl or aiohttp refusing a URL or header
            error = APIConnectionError(
                f"listing runs of thread {shown(thread_id)}: the request could not be sent "
                f"({type(exc).__name__})",
                thread_id=thread_id,
                retryable=False,
            )
        # Raised here, outside the except blocks, so that no aiohttp exception that carries
        # the request's headers (and so the API key) is kept as a cause or context.
        error.__cause__ = cause
        raise error


def _safe_cause(exc: aiohttp.ClientError) -> BaseException | None:
    """``exc`` as a cause to keep, unless it carries the request (and so the API key)."""
    if isinstance(exc, aiohttp.ClientResponseError) or hasattr(exc, "request_info"):
        return None
    return exc


def _describe(exc: BaseException) -> str:
    """A one-line account of an aiohttp error that cannot carry request headers."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error) or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__


async def _read_body(resp: aiohttp.ClientResponse, request: Request) -> bytes:
    cap = request.max_bytes
    length = resp.content_length
    if length is not None and length > cap:
        raise too_large(request, length)
    if length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
        return await resp.read()
    # Compressed (Content-Length counts the compressed bytes) or of unknown length: count
    # the decoded bytes as they come, so a small gzip bomb cannot fill memory either.
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise too_large(request, None)
        chunks.append(chunk)
    return b"".join(chunks)
