"""The client: one aiohttp session, one request per page, retried on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import anyio
from yarl import URL

from ._control import Pacing, RateLimitInfo, RetryBudget, TrafficControl, pause_from_headers
from ._fanout import PageStream, RunStream, Threads, fan_out
from ._models import Run, RunPage
from ._protocol import (
    DEFAULT_BASE_URL,
    PageWalk,
    RawPage,
    build_headers,
    build_url,
    check_list_args,
    decode_page,
    is_loopback_host,
    normalize_base_url,
    retry_delay,
    retry_hint,
    should_retry,
    structure_runs,
    to_run_page,
)
from .exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ResponseTooLargeError,
    RunListError,
)

__all__ = ["Client", "InsecureBaseURLWarning"]

logger = logging.getLogger("aiorunlist")

Order = Literal["asc", "desc"]

_NO_DEADLINE = contextlib.nullcontext()

#: How many same-origin redirects one request follows.
MAX_REDIRECTS = 5

#: Default cap on one response body: far above a page of 100 large runs.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


def _add_note(error: RunListError, note: str) -> None:
    """Say in the error's own message why it ends the page (kept in ``args`` too)."""
    error.message = f"{error.message} ({note})"
    error.args = (error.message,)


class InsecureBaseURLWarning(UserWarning):
    """The base URL sends the API key in clear text (``http://`` to a host other than loopback)."""


class Client:
    """An asyncio client for ``GET /threads/{thread_id}/runs``.

    Use it as an async context manager (``async with Client() as client:``), or call
    :meth:`aclose` when done. One client holds one aiohttp session for its whole life; create
    it once per application, not per request. Like that session, a client belongs to the
    event loop it is first used in: using it from another loop (a second ``asyncio.run``)
    raises :class:`RunListError`.

    :param api_key: the bearer key; defaults to ``$OPENAI_API_KEY``.
    :param base_url: the API root, e.g. ``"http://127.0.0.1:8080/v1"``; defaults to
        ``$OPENAI_BASE_URL``, then ``https://api.openai.com/v1``.
    :param organization: sent as ``OpenAI-Organization``; defaults to ``$OPENAI_ORG_ID``.
    :param project: sent as ``OpenAI-Project``; defaults to ``$OPENAI_PROJECT_ID``.
    :param timeout: seconds for one request (connect to last byte), or an
        :class:`aiohttp.ClientTimeout` for finer control.
    :param max_retries: how many times one page request is retried on connection errors,
        timeouts, cut or unreadable bodies, 408, 409, 429 and 5xx. ``0`` disables retries.
    :param session: an :class:`aiohttp.ClientSession` to borrow; the client never closes it.
        Without one, the client creates its own on first use and closes it in :meth:`aclose`.
    :param default_headers: extra headers sent with every request.
    :param max_response_bytes: larger responses are refused with
        :class:`~aiorunlist.ResponseTooLargeError`.
    :param initial_retry_delay: first backoff delay in seconds (doubled per retry, jittered).
    :param max_retry_delay: the cap of the backoff delay.
    :param connect_timeout: seconds to establish a connection (when ``timeout`` is a number).
    :param read_timeout: seconds between two reads of the response (``None``: no own limit).
    :param page_timeout: total seconds for one page, retries and their waits included; the
        client never sleeps past it. ``None``: no total limit.
    :param retry_budget: tokens shared by every request of the client; a retry spends 5 (10
        after a connection failure), a success gives back what its retries spent or adds 1.
        During an outage retries stop when it runs dry, instead of multiplying traffic.
        ``None`` disables the budget.
    :param pacing: a :class:`Pacing`: a fixed request rate, and/or adaptive slowing down on
        429s and low ``x-ratelimit-remaining-requests``. A ``Retry-After`` on a 429 or 503 always
        pauses every request of the client, with or without pacing.
    :raises RunListError: no API key given and ``OPENAI_API_KEY`` unset.
    :raises ValueError: a malformed ``base_url`` or a negative ``max_retries``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float | aiohttp.ClientTimeout = 60.0,
        max_retries: int = 2,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        initial_retry_delay: float = 0.5,
        max_retry_delay: float = 8.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = None,
        page_timeout: float | None = None,
        retry_budget: int | None = 500,
        pacing: Pacing | None = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise RunListError(
                "no API key: pass api_key=... or set the OPENAI_API_KEY environment variable"
            )
        if base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url: str = normalize_base_url(base_url)
        parts = urlsplit(self.base_url)
        host = parts.hostname
        if parts.scheme == "http" and not is_loopback_host(host):
            warnings.warn(
                f"base_url {self.base_url!r} is plain http to {host!r}: the API key would "
                "travel unencrypted; use https",
                InsecureBaseURLWarning,
                stacklevel=2,
            )
        if organization is None:
            organization = os.environ.get("OPENAI_ORG_ID")
        if project is None:
            project = os.environ.get("OPENAI_PROJECT_ID")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ValueError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        if isinstance(timeout, aiohttp.ClientTimeout):
            self._timeout = timeout
        else:
            for name, value in (
                ("timeout", timeout),
                ("connect_timeout", connect_timeout),
                ("read_timeout", read_timeout),
            ):
                if value is not None and not value > 0:
                    raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
            self._timeout = aiohttp.ClientTimeout(
                total=float(timeout), sock_connect=connect_timeout, sock_read=read_timeout
            )
        if page_timeout is not None and not page_timeout > 0:
            raise ValueError(
                f"page_timeout must be a positive number of seconds, got {page_timeout!r}"
            )
        if pacing is not None and not isinstance(pacing, Pacing):
            raise TypeError(f"pacing must be an aiorunlist.Pacing, got {pacing!r}")
        if initial_retry_delay < 0 or max_retry_delay < 0:
            raise ValueError("retry delays must be >= 0")
        self.organization = organization
        self.project = project
        self.max_retries = max_retries
        self.max_response_bytes = max_response_bytes
        self.initial_retry_delay = float(initial_retry_delay)
        self.max_retry_delay = float(max_retry_delay)
        self.page_timeout = page_timeout
        #: How many retries this client has made (all threads, all pages).
        self.retries = 0
        self._budget = None if retry_budget is None else RetryBudget(retry_budget)
        self._control = TrafficControl(pacing)
        self._budget_dry = False
        self._rate_limit: RateLimitInfo | None = None
        self._headers = build_headers(
            api_key, organization=organization, project=project, default_headers=default_headers
        )
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not a secret

    def __repr__(self) -> str:
        return (
            f"Client(base_url={self.base_url!r}, organization={self.organization!r}, "
            f"project={self.project!r}, max_retries={self.max_retries})"
        )

    # --- life cycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a borrowed one is left open). Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def rate_limit(self) -> RateLimitInfo | None:
        """The ``x-ratelimit-*`` headers of the latest response that carried them, if any."""
        return self._rate_limit

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RunListError("this Client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=self._timeout,
            )
            self._loop = loop
        elif self._owns_session and self._loop is not loop:
            raise RunListError(
                "this Client was first used in another event loop; an aiohttp session belongs "
                "to one loop, so create one Client per asyncio.run()"
            )
        return self._session

    # --- one page --------------------------------------------------------------------------------

    async def list_page(
        self,
        thread_id: str,
        *,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> RunPage:
        """Fetch one page of a thread's runs: one request (plus retries), exactly as served.

        :param thread_id: the thread, e.g. ``"thread_abc123"``.
        :param limit: runs per page, 1 to 100.
        :param order: ``"desc"`` (newest first, the API's default) or ``"asc"``.
        :param after: list the runs that follow this run id in the listing's order (older
            runs with ``"desc"``, newer ones with ``"asc"``).
        :param before: list the runs that precede this run id in the listing's order (newer
            runs with ``"desc"``): the ``limit`` nearest to it, in listing order.
        :raises ValueError: bad arguments (raised before anything is sent).
        :raises APIStatusError: the server answered 4xx/5xx (after retries where retryable).
        :raises APIConnectionError: no answer (after retries).
        :raises APIResponseValidationError: a 2xx answer that is not a list of runs.
        """
        check_list_args(thread_id, limit=limit, order=order, after=after, before=before)
        raw = await self._fetch_page(thread_id, limit, order, after, before)
        return to_run_page(raw, thread_id=thread_id)

    async def _read_body(self, resp: aiohttp.ClientResponse, thread_id: str) -> bytes:
        cap = self.max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise ResponseTooLargeError(
                f"listing runs of thread {thread_id!r}: the response announces {length} bytes, "
                f"more than max_response_bytes={cap}",
                thread_id=thread_id,
            )
        if length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
            return await resp.read()
        # Compressed (Content-Length counts the compressed bytes) or of unknown length: count
        # the decoded bytes as they come, so a small gzip bomb cannot fill memory either.
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"listing runs of thread {thread_id!r}: the response is larger than "
                    f"max_response_bytes={cap}",
                    thread_id=thread_id,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _fetch_page(  # noqa: PLR0917 - private; the page's parameters in URL order
        self,
        thread_id: str,
        limit: int,
        order: str,
        after: str | None,
        before: str | None,
        decode: Callable[[int, Mapping[str, str], bytes], Awaitable[RawPage]] | None = None,
    ) -> RawPage:
        """One page, decoded but not yet typed: wait for the client's turn, send, retry that
        one request as allowed."""
        url = URL(
            build_url(
                self.base_url, thread_id, limit=limit, order=order, after=after, before=before
            ),
            encoded=True,
        )
        control = self._control
        budget = self._budget
        deadline = None if self.page_timeout is None else anyio.current_time() + self.page_timeout
        attempt = 0
        spent = 0
        error: RunListError | None = None
        while True:
            await self._wait_turn(thread_id, deadline, attempt, error)
            session = self._get_session()  # per attempt: the client may have been closed
            headers: Mapping[str, str] = {}
            try:
                status, headers, body = await self._send(session, url, thread_id, deadline)
                if decode is None:
                    page = decode_page(status, headers, body, thread_id=thread_id)
                else:  # the fan-out has its consumer decode the page (see _fanout)
                    waited_from = anyio.current_time()
                    try:
                        page = await decode(status, headers, body)
                    except (APIStatusError, APIResponseValidationError):
                        raise
                    except BaseException:
                        # The request itself succeeded (a page the consumer refused for its
                        # cursor, or a thread it dropped, or the fan-out ending): book it so.
                        self._succeeded(headers, spent)
                        raise
                    finally:
                        if deadline is not None:  # time spent waiting on the consumer is not
                            deadline += anyio.current_time() - waited_from  # the request's
            except APIStatusError as exc:
                error = exc
                status = exc.status_code
            except (APIConnectionError, APIResponseValidationError) as exc:
                error = exc
                status = 0
            else:
                self._succeeded(headers, spent)
                return page
            now = anyio.current_time()
            if "x-ratelimit-remaining-requests" in headers:
                self._rate_limit = RateLimitInfo.from_headers(headers, time.monotonic())
            if status == 429:
                control.throttled(now)
            if status:
                control.pause(now, pause_from_headers(status, headers, retry_hint(headers)))
            if isinstance(error, APIStatusError):
                if not should_retry(status, headers, error):
                    raise error
            elif not error.retryable:
                raise error
            if attempt >= self.max_retries:
                raise error
            delay = retry_delay(
                attempt,
                headers,
                initial_delay=self.initial_retry_delay,
                max_delay=self.max_retry_delay,
                rng=self._rng,
            )
            if deadline is not None and now + delay > deadline:
                _add_note(error, f"not retried: page_timeout={self.page_timeout}s would pass")
                raise error
            cost = 0
            if budget is not None:
                taken = budget.acquire(connection_failure=isinstance(error, APIConnectionError))
                if taken is None:
                    # One warning when the budget runs dry, not one per request of an outage.
                    level = logging.INFO if self._budget_dry else logging.WARNING
                    self._budget_dry = True
                    logger.log(
                        level,
                        "not retrying thread %s: the client's retry budget is spent (%s)",
                        thread_id,
                        error,
                        extra={"thread_id": thread_id, "attempt": attempt + 1},
                    )
                    _add_note(
                        error,
                        "not retried: this client's retry budget is spent, too many requests "
                        "failed recently",
                    )
                    raise error
                cost = taken
            logger.info(
                "retrying thread %s in %.3fs (attempt %d of %d): %s",
                thread_id,
                delay,
                attempt + 1,
                self.max_retries,
                error,
                extra={
                    "thread_id": thread_id,
                    "attempt": attempt + 1,
                    "request_id": getattr(error, "request_id", None),
                },
            )
            try:
                await anyio.sleep(delay)
            except BaseException:
                if budget is not None and cost:
                    budget.success(cost)  # the retry never happened: give its tokens back
                raise
            spent += cost
            self.retries += 1
            attempt += 1

    def _succeeded(self, headers: Mapping[str, str], spent: int) -> None:
        """Book a request that got its page: rate-limit headers, budget refund, pacing."""
        if "x-ratelimit-remaining-requests" in headers:
            self._rate_limit = RateLimitInfo.from_headers(headers, time.monotonic())
        if self._budget is not None:
            self._budget.success(spent)
            self._budget_dry = False
        self._control.succeeded(anyio.current_time(), headers)

    async def _wait_turn(
        self, thread_id: str, deadline: float | None, attempt: int, error: RunListError | None
    ) -> None:
        """Wait for the shared pause and the pacing; book a slot only once it is this one's.

        A wait that would pass ``page_timeout`` raises at once: the last error if there was
        one (noting why it was not retried), else an :class:`APITimeoutError`.
        """
        control = self._control
        while True:
            now = anyio.current_time()
            wait = control.wait(now)
            if wait <= 0:
                control.book(now)
                return
            if deadline is not None and now + wait > deadline:
                if error is not None:
                    _add_note(
                        error,
                        f"not retried: waiting {wait:.1f}s for the server's pause or the "
                        f"pacing would pass page_timeout={self.page_timeout}s",
                    )
                    raise error
                raise self._deadline_error(thread_id, attempt)
            await anyio.sleep(wait)

    def _deadline_error(self, thread_id: str, attempt: int) -> APITimeoutError:
        return APITimeoutError(
            f"listing runs of thread {thread_id!r}: page_timeout={self.page_timeout}s passed "
            f"after {attempt + 1} attempt(s)",
            thread_id=thread_id,
        )

    async def _send(
        self, session: aiohttp.ClientSession, url: URL, thread_id: str, deadline: float | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one request, following same-origin redirects; return status, headers, body.

        Transport failures come out as :class:`APIConnectionError` / :class:`APITimeoutError`.
        A redirect to another origin is refused: the API key would travel with it.
        """
        remaining = None if deadline is None else deadline - anyio.current_time()
        if remaining is not None and remaining <= 0:
            raise self._deadline_error(thread_id, 0)
        try:
            # No page_timeout: no cancel scope to enter and leave on every request.
            with anyio.fail_after(remaining) if remaining is not None else _NO_DEADLINE:
                for _hop in range(MAX_REDIRECTS + 1):
                    logger.debug("GET %s (thread %s)", url, thread_id)
                    async with session.get(
                        url,
                        headers=self._headers,
                        timeout=self._timeout,
                        raise_for_status=False,
                        allow_redirects=False,
                    ) as resp:
                        status = resp.status
                        headers = resp.headers
                        if status in (301, 302, 303, 307, 308) and "Location" in headers:
                            url = self._redirect_target(url, headers["Location"], thread_id)
                            continue
                        body = await self._read_body(resp, thread_id)
                        return status, headers, body
                raise APIConnectionError(
                    f"listing runs of thread {thread_id!r}: more than {MAX_REDIRECTS} redirects",
                    thread_id=thread_id,
                    retryable=False,
                )
        except (TimeoutError, asyncio.TimeoutError) as exc:
            if remaining is not None and anyio.current_time() >= deadline:  # type: ignore[operator]
                raise self._deadline_error(thread_id, 0) from exc
            raise APITimeoutError(
                f"listing runs of thread {thread_id!r} timed out", thread_id=thread_id
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise APIConnectionError(
                f"listing runs of thread {thread_id!r}: the response body was cut short ({exc})",
                thread_id=thread_id,
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"listing runs of thread {thread_id!r}: could not reach {self.base_url} "
                f"({type(exc).__name__}: {exc})",
                thread_id=thread_id,
            ) from exc

    def _redirect_target(self, url: URL, location: str, thread_id: str) -> URL:
        target = url.join(URL(location))
        if target.origin() != url.origin():
            raise APIConnectionError(
                f"listing runs of thread {thread_id!r}: the server redirected to another origin "
                f"({target.origin()}); not following, as the API key would go with it",
                thread_id=thread_id,
                retryable=False,
            )
        return target

    # --- a whole thread ------------------------------------------------------------------------

    def runs(
        self,
        thread_id: str,
        *,
        order: Order = "desc",
        page_size: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> AsyncGenerator[Run, None]:
        """Every run of one thread, lazily, one page request at a time.

        Nothing is sent until iteration starts, and the next page is requested only once the
        current one has been consumed. ``has_more`` is authoritative (no trailing empty
        request). Each page request is retried on its own, so a retry never yields a run twice;
        a server that ignores the cursor (sends the cursor's run again, or the same cursor
        twice) raises :class:`PaginationError`.

        :param thread_id: the thread.
        :param order: ``"desc"`` (newest first) or ``"asc"``.
        :param page_size: runs per request, 1 to 100.
        :param after: resume right after this run id (the runs that follow it in the
            listing's order: older ones with ``"desc"``).
        :param before: walk backwards from this run id: every run listed before it (newer
            ones with ``"desc"``), the one nearest to it first — for an incremental sync that
            checkpoints the newest id it has handled.
        :raises ValueError: bad arguments, raised here, before iteration.
        :raises PaginationError: the server's pages do not advance.

        Leave early with ``contextlib.aclosing`` to release everything at once::

            async with aclosing(client.runs(tid)) as runs:
                async for run in runs:
                    ...
        """
        check_list_args(
            thread_id,
            limit=page_size,
            order=order,
            after=after,
            before=before,
            limit_name="page_size",
        )
        return self._runs(thread_id, order, page_size, after, before)

    async def _runs(
        self, thread_id: str, order: str, page_size: int, after: str | None, before: str | None
    ) -> AsyncGenerator[Run, None]:
        walk = PageWalk(thread_id, after=after, before=before)
        while True:
            page = await self._fetch_page(thread_id, page_size, order, walk.after, walk.before)
            for run in structure_runs(page, walk.ordered(page), thread_id=thread_id):
                yield run
            if not walk.advance(page):
                return

    def runs_many(
        self,
        thread_ids: Threads,
        *,
        concurrency: int = 16,
        order: Order = "desc",
        page_size: int = 100,
        on_error: Literal["raise", "collect"] = "raise",
    ) -> AbstractAsyncContextManager[RunStream]:
        """Every run of many threads, with at most ``concurrency`` requests in flight.

        An async context manager handing out a :class:`RunStream`::

            async with client.runs_many(thread_ids, concurrency=32) as stream:
                async for run in stream:
                    ...

        :param thread_ids: any iterable or async iterable of thread ids, consumed lazily; an
            item may also be a :class:`ThreadStart` to list that thread from a cursor.
        :param concurrency: the most requests in flight at once (1 to 1024).
        :param order: ``"desc"`` or ``"asc"``, for every thread.
        :param page_size: runs per request, 1 to 100.
        :param on_error: ``"raise"``: the first failing thread stops everything and its own
            exception propagates from the ``async for``. ``"collect"``: the other threads go on,
            and ``stream.failures`` maps each failed thread id to its exception.

        Each thread's runs arrive in that thread's order; threads interleave. A slow consumer
        pauses the producers, so the client holds at most ``concurrency + 1`` pages at once (a
        page in each worker's hands, waiting to be taken, and the one being read), however
        many threads and runs there are.
        Leaving the block early cancels all work at once; the client stays usable.
        """
        return fan_out(
            self,
            thread_ids,
            RunStream,
            concurrency=concurrency,
            order=order,
            page_size=page_size,
            on_error=on_error,
        )

    def pages_many(
        self,
        thread_ids: Threads,
        *,
        concurrency: int = 16,
        order: Order = "desc",
        page_size: int = 100,
        on_error: Literal["raise", "collect"] = "raise",
    ) -> AbstractAsyncContextManager[PageStream]:
        """The fan-out of :meth:`runs_many`, a page at a time, for consumers that checkpoint.

        Hands out :class:`ThreadPage` items: the thread, its runs in :meth:`runs` order, and
        ``last`` on the thread's final page, so an exporter can record per thread how far it
        got (the last run id written, or that the thread is done) and resume with
        :class:`ThreadStart` items. With ``on_error="collect"`` a failed thread ends with an
        item whose ``error`` is set (and ``last`` true); ``stream.failures`` has them all.
        The arguments and guarantees are those of :meth:`runs_many`.
        """
        return fan_out(
            self,
            thread_ids,
            PageStream,
            concurrency=concurrency,
            order=order,
            page_size=page_size,
            on_error=on_error,
        )
