"""The client: wires a transport, per-request attempts and shared traffic control.

Data flows one way: the arguments build a request (:mod:`._protocol`), the attempts and the
traffic control say when it may go (:mod:`._attempts`, :mod:`._control`), the transport
sends it (:mod:`._transport`), and :mod:`._protocol` reads and checks the page before any
of its runs is handed out. :meth:`Client._walk` is the one page loop behind ``runs()``,
``runs_many()`` and ``pages_many()``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import re
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._attempts import Attempts, Retries, Timeouts
from ._control import LocalTrafficControl, Pacing, RateLimitInfo, TrafficControl
from ._fanout import PageStream, RunStream, Threads, fan_out
from ._models import Run, RunPage
from ._protocol import (
    DEFAULT_BASE_URL,
    REDIRECT_STATUSES,
    Order,
    PageWalk,
    QuirkNotes,
    RawPage,
    accept_page,
    build_headers,
    build_url,
    check_list_args,
    check_page_size,
    is_loopback_host,
    normalize_base_url,
    redirect_target,
    structure_runs,
    to_run_page,
)
from ._text import cut, shown
from ._transport import AiohttpTransport, Request, Response, Transport
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    NotFoundError,
    QuotaExceededError,
    RunListError,
)

__all__ = ["Client", "InsecureBaseURLWarning"]

logger = logging.getLogger("aiorunlist")

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

_NO_DEADLINE = contextlib.nullcontext()

#: How many same-origin redirects one request follows.
MAX_REDIRECTS = 5

#: Default cap on one response body: far above a page of 100 large runs.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

#: A page, checked against its thread's walk: the decoded answer (``None`` when another task
#: holds it), its run objects in hand-out order, and whether more pages follow.
Checked = tuple[RawPage | None, list[Any], bool]

#: Where a page is decoded and checked: in the requesting task (``None``), or elsewhere.
Accept = Callable[[PageWalk, Response], Awaitable[Checked]]

_UNSET: Any = object()

#: Old keyword -> (the grouped setting that replaces it, the attribute there).
_DEPRECATED = {
    "initial_retry_delay": ("retry=Retries(initial_delay=...)", "initial_delay"),
    "max_retry_delay": ("retry=Retries(max_delay=...)", "max_delay"),
    "retry_budget": ("retry=Retries(budget=...)", "budget"),
    "connect_timeout": ("timeout=Timeouts(connect=...)", "connect"),
    "read_timeout": ("timeout=Timeouts(read=...)", "read"),
    "page_timeout": ("timeout=Timeouts(page=...)", "page"),
}


class InsecureBaseURLWarning(UserWarning):
    """The base URL sends the API key in clear text (``http://`` to a host other than loopback)."""


#: How many leading characters of the key mark a copy of it cut short (a message that quotes
#: the first N characters of a server's text may end in the middle of the key). A key shorter
#: than this is masked whole, where it stands as a word of its own (see _mask_text).
_KEY_HEAD = 8
#: What a masked key reads as; the second for a key that is part of the first.
_HIDDEN = "<hidden>"
_HIDDEN_ALT = "***"
#: Characters that make a short key part of a longer word (a thread id, a host name).
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _mask_text(text: str, secret: str) -> str:
    """``text`` with the key masked, whole or cut short (its head and what follows of it).

    A key of at least ``_KEY_HEAD`` characters is masked wherever it appears, and so is any
    copy cut short that keeps its first ``_KEY_HEAD`` characters; fewer leading characters
    of a key that long (``sk-proj``) are its public prefix, not the secret. A shorter key
    (a test key such as ``sk-1``, a local server's ``ollama``) is masked whole where it is a
    word of its own: not where letters, digits, ``_`` or ``-`` go on either side of it, as
    in a thread id ``thread_task-1`` or a host name, which masking would make unreadable.
    The key is masked as it is and as a ``repr`` shows it (a backslash or quote escaped),
    the way messages quote server values. The mask never contains the key.
    """
    hidden = _HIDDEN if secret not in _HIDDEN else _HIDDEN_ALT
    for form in _forms(secret):
        if len(form) < _KEY_HEAD:
            text = _mask_word(text, form, hidden)
        else:
            text = _mask_long(text, form, hidden)
    return text


@functools.lru_cache(maxsize=16)
def _forms(secret: str) -> tuple[str, ...]:
    """The key as text may hold it: as it is, and escaped as in a ``repr`` (in single or in
    double quotes) when that differs."""
    forms = [secret, repr(secret + '"')[1:-2]]  # a repr in single quotes: ' escaped
    if '"' not in secret:
        forms.append(repr(secret + "'")[1:-2])  # in double quotes: ' as it is
    return tuple(dict.fromkeys(forms))


def _mask_long(text: str, secret: str, hidden: str) -> str:
    """``text`` with a long key masked wherever it is, whole or cut to its head and more."""
    if secret in text:
        text = text.replace(secret, hidden)
    head = secret[:_KEY_HEAD]
    start = text.find(head)
    while start >= 0:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = f"{text[:start]}{hidden}{text[end:]}"
        start = text.find(head, start + len(hidden))
    return text


def _mask_word(text: str, secret: str, hidden: str) -> str:
    """``text`` with each copy of a short key that is not part of a longer word masked: a
    copy is part of one where a letter, digit, ``_`` or ``-`` of it touches another."""
    start = text.find(secret)
    if start < 0:
        return text
    glue_left, glue_right = secret[0] in _WORD, secret[-1] in _WORD
    parts: list[str] = []
    done = 0
    while start >= 0:
        end = start + len(secret)
        if (
            glue_left and start > 0 and text[start - 1] in _WORD and not _escape_ends(text, start)
        ) or (glue_right and end < len(text) and text[end] in _WORD):
            start = text.find(secret, start + 1)
            continue
        parts += [text[done:start], hidden]
        done = end
        start = text.find(secret, end)
    parts.append(text[done:])
    return "".join(parts)


#: How an escape ending just before a key may look: URL encoding (``%20``), and the
#: backslash escapes of a ``repr`` or a JSON string (``\n``, ``\x0b``, ``\u00a0``).
_ESCAPE_BEFORE = re.compile(
    r"(?:%[0-9A-Fa-f]{2}|\\[abfnrtv0]|\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4})\Z"
)


def _escape_ends(text: str, at: int) -> bool:
    """Whether an escape ends at ``at`` in ``text``: its last character is no word glued to
    what follows (``Bearer%20sk-1``, ``'x\\nsk-1'``)."""
    return _ESCAPE_BEFORE.search(text[max(0, at - 6) : at]) is not None


def _mask(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` in its strings masked."""
    if isinstance(value, str):
        return _mask_text(value, secret)
    if isinstance(value, tuple):
        return tuple(_mask(v, secret) for v in value)
    if isinstance(value, dict):
        return {_mask(k, secret): _mask(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, secret) for v in value]
    return value


def _holds(value: Any, heads: tuple[str, ...]) -> bool:
    """Whether one of ``heads`` is in a string of ``value`` (strings read as they are, other
    objects as their ``repr``)."""
    if isinstance(value, str):
        return any(head in value for head in heads)
    if isinstance(value, (tuple, list)):
        return any(_holds(v, heads) for v in value)
    if isinstance(value, Mapping):
        return any(_holds(k, heads) or _holds(v, heads) for k, v in value.items())
    text = repr(value)
    return any(head in text for head in heads)


def _check_api_key(api_key: object) -> str:
    if not isinstance(api_key, str):
        raise TypeError("api_key must be a string")
    if api_key != api_key.strip() or any(c in api_key for c in "\r\n\0"):
        raise ValueError(
            "api_key has whitespace or a control character in it (a stray newline from a "
            "file or a copy-paste?); pass the bare key"
        )
    return api_key


def _base_url(base_url: str | None) -> str:
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    base_url = normalize_base_url(base_url)
    parts = urlsplit(base_url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        warnings.warn(
            f"base_url {base_url!r} is plain http to {parts.hostname!r}: the API key would "
            "travel unencrypted; use https",
            InsecureBaseURLWarning,
            stacklevel=3,
        )
    return base_url


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_traffic(
    pacing: Pacing | None, control: TrafficControl | None, budget_given: bool
) -> None:
    if pacing is not None and not isinstance(pacing, Pacing):
        raise TypeError(f"pacing must be an aiorunlist.Pacing, got {pacing!r}")
    if control is None:
        return
    if not isinstance(control, TrafficControl):
        raise TypeError(f"control must be an aiorunlist.TrafficControl, got {control!r}")
    if pacing is not None or budget_given:
        raise ValueError(
            "pass pacing and the retry budget to the TrafficControl given as control=, "
            "not to the Client"
        )


class Client:
    """An asyncio client for ``GET /threads/{thread_id}/runs``.

    Use it as an async context manager (``async with Client() as client:``), or call
    :meth:`aclose` when done. One client holds one connection pool for its whole life; create
    it once per application, not per request. Like its aiohttp session, a client belongs to
    the event loop it is first used in: using it from another loop (a second ``asyncio.run``)
    raises :class:`RunListError`.

    :param api_key: the bearer key; defaults to ``$OPENAI_API_KEY``.
    :param base_url: the API root, e.g. ``"http://127.0.0.1:8080/v1"``; defaults to
        ``$OPENAI_BASE_URL``, then ``https://api.openai.com/v1``.
    :param organization: sent as ``OpenAI-Organization``; defaults to ``$OPENAI_ORG_ID``.
    :param project: sent as ``OpenAI-Project``; defaults to ``$OPENAI_PROJECT_ID``.
    :param timeout: seconds for one request (connect to last byte), or :class:`Timeouts` for
        every limit (connect, read, a whole page), or an :class:`aiohttp.ClientTimeout`.
    :param max_retries: how many times one page request is retried on connection errors,
        timeouts, cut or unreadable bodies, 408, 409, 429 and 5xx. ``0`` disables retries.
        A shorthand for ``retry=Retries(max_retries=...)``.
    :param retry: how requests are retried: a :class:`Retries` (backoff, the retry budget).
    :param session: an :class:`aiohttp.ClientSession` to borrow; the client never closes it.
        Without one, the client creates its own on first use and closes it in :meth:`aclose`.
    :param transport: a :class:`Transport` to send requests with instead of aiohttp, such as
        :class:`aiorunlist.testing.MockTransport` in tests. Not with ``session``.
    :param control: a :class:`TrafficControl` holding the pause, pacing and retry budget the
        client shares (by default its own :class:`LocalTrafficControl`). Not with ``pacing``.
    :param default_headers: extra headers sent with every request.
    :param max_response_bytes: larger responses are refused with
        :class:`~aiorunlist.ResponseTooLargeError`.
    :param pacing: a :class:`Pacing`: a fixed request rate the client never exceeds. With or
        without one, the client keeps to the token bucket the server's ``x-ratelimit-*``
        headers describe and pauses every request when a 429 or 503 says ``Retry-After``;
        without one (or with ``adaptive=True``) it also learns a pace from 429s that come
        without rate-limit headers.
    :param initial_retry_delay: deprecated, use ``retry=Retries(initial_delay=...)``.
    :param max_retry_delay: deprecated, use ``retry=Retries(max_delay=...)``.
    :param retry_budget: deprecated, use ``retry=Retries(budget=...)``.
    :param connect_timeout: deprecated, use ``timeout=Timeouts(connect=...)``.
    :param read_timeout: deprecated, use ``timeout=Timeouts(read=...)``.
    :param page_timeout: deprecated, use ``timeout=Timeouts(page=...)``.
    :raises RunListError: no API key given and ``OPENAI_API_KEY`` unset.
    :raises ValueError: a malformed ``base_url``, key or setting (before anything is sent).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float | Timeouts | aiohttp.ClientTimeout = 60.0,
        max_retries: int | None = None,
        retry: Retries | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        control: TrafficControl | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        pacing: Pacing | None = None,
        initial_retry_delay: float = _UNSET,
        max_retry_delay: float = _UNSET,
        connect_timeout: float | None = _UNSET,
        read_timeout: float | None = _UNSET,
        page_timeout: float | None = _UNSET,
        retry_budget: int | None = _UNSET,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise RunListError(
                "no API key: pass api_key=... or set the OPENAI_API_KEY environment variable"
            )
        api_key = _check_api_key(api_key)
        self.base_url: str = _base_url(base_url)
        if organization is None:
            organization = os.environ.get("OPENAI_ORG_ID")
        if project is None:
            project = os.environ.get("OPENAI_PROJECT_ID")
        old = {
            name: value
            for name, value in (
                ("initial_retry_delay", initial_retry_delay),
                ("max_retry_delay", max_retry_delay),
                ("retry_budget", retry_budget),
                ("connect_timeout", connect_timeout),
                ("read_timeout", read_timeout),
                ("page_timeout", page_timeout),
            )
            if value is not _UNSET
        }
        for name in old:
            warnings.warn(
                f"Client({name}=...) is deprecated; pass {_DEPRECATED[name][0]}",
                DeprecationWarning,
                stacklevel=2,
            )
        self.retry: Retries = self._retries(retry, max_retries, old)
        self.timeouts: Timeouts
        client_timeout = self._timeouts(timeout, old)
        _check_count("max_response_bytes", max_response_bytes)
        _check_traffic(pacing, control, "retry_budget" in old)
        if transport is not None:
            if not isinstance(transport, Transport):
                raise TypeError(f"transport must be an aiorunlist.Transport, got {transport!r}")
            if session is not None:
                raise ValueError("pass either session= or transport=, not both")
        self.organization = organization
        self.project = project
        self.max_response_bytes = max_response_bytes
        #: How many retries this client has made (all threads, all pages).
        self.retries = 0
        self._control: TrafficControl = (
            control if control is not None else LocalTrafficControl(pacing, self.retry.budget)
        )
        self._transport: Transport = (
            transport
            if transport is not None
            else AiohttpTransport(session, timeout=client_timeout)
        )
        self._budget_dry = False
        #: Server quirks already warned about (each once per client).
        self._notes = QuirkNotes()
        self._rate_limit: RateLimitInfo | None = None
        self._api_key = api_key
        self._headers = build_headers(
            api_key, organization=organization, project=project, default_headers=default_headers
        )
        self._closed = False
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not a secret

    @staticmethod
    def _retries(retry: Retries | None, max_retries: int | None, old: dict[str, Any]) -> Retries:
        changes = {
            _DEPRECATED[name][1]: value
            for name, value in old.items()
            if _DEPRECATED[name][0].startswith("retry")
        }
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if retry is None:
            return Retries(**changes)
        if not isinstance(retry, Retries):
            raise TypeError(f"retry must be an aiorunlist.Retries, got {retry!r}")
        if changes:
            raise ValueError(
                "pass the retry settings in retry=Retries(...) only, not also as keywords"
            )
        return retry

    def _timeouts(
        self, timeout: float | Timeouts | aiohttp.ClientTimeout, old: dict[str, Any]
    ) -> aiohttp.ClientTimeout:
        changes = {
            _DEPRECATED[name][1]: value
            for name, value in old.items()
            if _DEPRECATED[name][0].startswith("timeout")
        }
        if isinstance(timeout, aiohttp.ClientTimeout):
            self.timeouts = attrs.evolve(
                Timeouts(request=None, connect=None, read=None, page=None),
                page=changes.get("page"),
            )
            return timeout
        if isinstance(timeout, Timeouts):
            if changes:
                raise ValueError(
                    "pass the time limits in timeout=Timeouts(...), not also as keywords"
                )
            self.timeouts = timeout
        else:
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, (int, float))
                or not math.isfinite(timeout)
                or timeout <= 0
            ):
                raise ValueError(
                    f"timeout must be a finite number of seconds > 0, a Timeouts or an "
                    f"aiohttp.ClientTimeout, got {timeout!r}"
                )
            self.timeouts = Timeouts(request=float(timeout), **changes)
        t = self.timeouts
        return aiohttp.ClientTimeout(total=t.request, sock_connect=t.connect, sock_read=t.read)

    # Read-only views of the settings, as the client had them before they were grouped.

    @property
    def max_retries(self) -> int:
        """How many times one page request is retried (``retry.max_retries``)."""
        return self.retry.max_retries

    @property
    def initial_retry_delay(self) -> float:
        """The first backoff delay in seconds (``retry.initial_delay``)."""
        return float(self.retry.initial_delay)

    @property
    def max_retry_delay(self) -> float:
        """The cap of the backoff delay in seconds (``retry.max_delay``)."""
        return float(self.retry.max_delay)

    @property
    def page_timeout(self) -> float | None:
        """Total seconds for one page, retries included (``timeouts.page``)."""
        return self.timeouts.page

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
        """Close the client and its transport (a borrowed session is left open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    @property
    def rate_limit(self) -> RateLimitInfo | None:
        """The ``x-ratelimit-*`` headers of the latest response that carried them, if any."""
        return self._rate_limit

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    @property
    def transport(self) -> Transport:
        """The :class:`Transport` the client sends its requests with."""
        return self._transport

    @property
    def control(self) -> TrafficControl:
        """The :class:`TrafficControl` the client shares its pause, pacing and budget through."""
        return self._control

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        transport = self._transport
        return transport.session if isinstance(transport, AiohttpTransport) else None

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
        check_list_args(thread_id, order=order, after=after, before=before)
        check_page_size(limit)
        walk = PageWalk(
            thread_id, after=after, before=before, order=order, limit=limit, notes=self._notes
        )

        async def decode(walk: PageWalk, response: Response) -> Checked:
            raw, _items, _more = accept_page(walk, response.status, response.headers, response.body)
            return raw, [], False

        raw, _, _ = await self._fetch(walk, limit, order, decode)
        assert raw is not None  # noqa: S101 - decoded here
        try:
            return to_run_page(raw, thread_id=thread_id)
        except RunListError as exc:
            self._scrub(exc)
            raise

    async def _fetch(
        self, walk: PageWalk, limit: int, order: str, accept: Accept | None
    ) -> Checked:
        """One page of ``walk``'s thread, checked: wait for the turn, send, decode, then book
        the success or ask the attempts what to do about the failure."""
        url = build_url(
            self.base_url,
            walk.thread_id,
            limit=limit,
            order=order,
            after=walk.after,
            before=walk.before,
        )
        request = Request("GET", url, self._headers, walk.thread_id, self.max_response_bytes)
        attempts = Attempts(
            self.retry,
            thread_id=walk.thread_id,
            now=anyio.current_time(),
            page_timeout=self.timeouts.page,
            rng=self._rng,
        )
        error: RunListError | None = None
        while True:
            await self._wait_turn(attempts, error)
            response: Response | None = None
            try:
                response = await self._exchange(request, attempts)
                checked = await self._decode(walk, response, accept, attempts)
            except RunListError as exc:
                error = self._failed(exc)
            except Exception:
                await self._answered(response, attempts)  # refused by its consumer
                raise
            else:
                await self._answered(response, attempts)
                return checked
            await self._retry_or_raise(error, response, attempts)

    @staticmethod
    async def _decode(
        walk: PageWalk, response: Response, accept: Accept | None, attempts: Attempts
    ) -> Checked:
        """Decode and check the page here, or have ``accept`` do it (the fan-out's consumer)."""
        if accept is None:
            return accept_page(walk, response.status, response.headers, response.body)
        waited_from = anyio.current_time()
        try:
            return await accept(walk, response)
        finally:  # time spent waiting on the consumer is not the request's
            attempts.extend(anyio.current_time() - waited_from)

    async def _answered(self, response: Response | None, attempts: Attempts) -> None:
        """Book a request that got an answer the client could read (its page, or a page
        refused for its shape or cursor): rate-limit headers, budget, pacing."""
        if response is None:
            return
        self._booked(response.headers)
        await self._control.record(response.status, response.headers, ok=True, spent=attempts.spent)
        self._budget_dry = False

    async def _retry_or_raise(
        self, error: RunListError, response: Response | None, attempts: Attempts
    ) -> None:
        """After a failure: raise ``error``, or wait until the request may be sent again."""
        control = self._control
        if not isinstance(error, APIStatusError) and not error.retryable:
            # A 2xx answer the client refused (its shape, its cursor): the request worked.
            await self._answered(response, attempts)
            raise error
        headers = error.headers if isinstance(error, APIStatusError) else {}
        status = error.status_code if isinstance(error, APIStatusError) else 0
        await control.record(status, headers, ok=False)
        if isinstance(error, (AuthenticationError, QuotaExceededError)):
            await control.halt(error)  # a shared control stops the other clients too
        retry = attempts.after_failure(error, headers, anyio.current_time())
        if retry is None:
            raise error
        tokens = await control.take_retry(connection_failure=retry.connection_failure)
        thread_id = attempts.thread_id
        context = {"thread_id": thread_id, "attempt": attempts.attempt + 1}
        if tokens is None:
            # One warning when the budget runs dry, not one per request of an outage.
            level = logging.INFO if self._budget_dry else logging.WARNING
            self._budget_dry = True
            logger.log(
                level,
                "not retrying thread %s: the client's retry budget is spent (%s)",
                cut(thread_id),
                error,
                extra=context,
            )
            raise attempts.budget_spent(error)
        logger.info(
            "retrying thread %s in %.3fs (attempt %d of %d): %s",
            cut(thread_id),
            retry.delay,
            attempts.attempt + 1,
            self.retry.max_retries,
            error,
            extra={**context, "request_id": getattr(error, "request_id", None)},
        )
        try:
            await anyio.sleep(retry.delay)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await control.refund(tokens)  # the retry never happened
            raise
        attempts.retried(tokens)
        self.retries += 1

    def _failed(self, error: RunListError) -> RunListError:
        """Book what a failure says (rate-limit headers) and mask the key in server text."""
        if isinstance(error, APIStatusError):
            self._booked(error.headers)
        if isinstance(error, NotFoundError):
            self._hint_v1(error)
        return self._scrub(error)

    def _scrub(self, error: E) -> E:
        """``error``, with the API key masked wherever server text put it: its message,
        attributes (body, headers), and the exceptions it was raised from."""
        secret = self._api_key
        # The key's head, as it is and as a repr shows it (see _mask_text).
        heads = tuple(form[:_KEY_HEAD] for form in _forms(secret))
        seen: set[int] = set()
        todo: list[BaseException | None] = [error]
        while todo:
            exc = todo.pop()
            if exc is None or id(exc) in seen:
                continue
            seen.add(id(exc))
            attributes = getattr(exc, "__dict__", {})
            if _holds(attributes, heads) or _holds(exc.args, heads):
                # A server that echoes the Authorization header: mask it wherever it landed.
                for name, value in list(attributes.items()):
                    if isinstance(value, Mapping) and not isinstance(value, dict):
                        # Headers: still looked up case-insensitively once masked.
                        masked = CIMultiDict((k, _mask(v, secret)) for k, v in value.items())
                        setattr(exc, name, CIMultiDictProxy(masked))
                    else:
                        setattr(exc, name, _mask(value, secret))
                exc.args = tuple(_mask(a, secret) for a in exc.args)
            todo += [exc.__cause__, exc.__context__]
        return error

    def _hint_v1(self, error: NotFoundError) -> None:
        """A 404 while ``base_url`` does not end in ``/v1``: suggest adding it."""
        path = urlsplit(self.base_url).path.rstrip("/")
        if path.endswith("/v1") or "does not end in /v1" in error.message:
            return
        error.message += (
            f"; base_url {self.base_url!r} does not end in /v1: if every thread answers 404, "
            f"try base_url={self.base_url + '/v1'!r}"
        )
        error.args = (error.message, *error.args[1:])

    def _booked(self, headers: Mapping[str, str]) -> None:
        if "x-ratelimit-remaining-requests" in headers:
            self._rate_limit = RateLimitInfo.from_headers(headers, time.monotonic())

    async def _wait_turn(self, attempts: Attempts, error: RunListError | None) -> None:
        """Wait for the shared pause and the pacing; the control books the slot once it is
        this request's. A wait that would pass the page's deadline raises at once."""
        if self._closed:
            raise RunListError("this Client is closed; create a new one")
        control = self._control
        while True:
            wait = await control.reserve()
            if wait <= 0:
                return
            attempts.check_wait(wait, anyio.current_time(), error)
            await anyio.sleep(wait)

    async def _exchange(self, request: Request, attempts: Attempts) -> Response:
        """Send one request through the transport, following same-origin redirects, within
        the page's deadline."""
        if self._closed:
            raise RunListError("this Client is closed; create a new one")
        left = attempts.time_left(anyio.current_time())
        try:
            # No page deadline: no cancel scope to enter and leave on every request.
            with anyio.fail_after(left) if left is not None else _NO_DEADLINE:
                for _hop in range(MAX_REDIRECTS + 1):
                    if logger.isEnabledFor(logging.DEBUG):  # a redirect's URL is server text
                        logger.debug("GET %s", _mask(cut(request.url, 300), self._api_key))
                    response = await self._transport.send(request)
                    location = response.headers.get("Location")
                    if response.status not in REDIRECT_STATUSES or location is None:
                        return response
                    url = redirect_target(request.url, location, thread_id=request.thread_id)
                    request = attrs.evolve(request, url=url)
        except TimeoutError:
            raise attempts.deadline_error() from None
        raise APIConnectionError(
            f"listing runs of thread {shown(request.thread_id)}: more than {MAX_REDIRECTS} "
            "redirects",
            thread_id=request.thread_id,
            retryable=False,
        )

    async def _walk(
        self,
        thread_id: str,
        *,
        order: str,
        page_size: int,
        after: str | None,
        before: str | None,
        accept: Accept | None = None,
    ) -> AsyncGenerator[Checked, None]:
        """The one page loop: every page of one thread, each checked against the walk (cursor
        advance, repeats) before it is yielded, the next requested only when asked for.

        ``accept`` decodes and checks a page somewhere else (the fan-out's consumer); by
        default it happens here.
        """
        walk = PageWalk(
            thread_id,
            after=after,
            before=before,
            order=order,
            limit=page_size,
            notes=self._notes,
        )
        more = True
        while more:
            checked = await self._fetch(walk, page_size, order, accept)
            more = checked[2]
            yield checked

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
        check_list_args(thread_id, order=order, after=after, before=before)
        check_page_size(page_size, name="page_size")
        return self._runs(thread_id, order, page_size, after, before)

    async def _runs(
        self, thread_id: str, order: str, page_size: int, after: str | None, before: str | None
    ) -> AsyncGenerator[Run, None]:
        pages = self._walk(thread_id, order=order, page_size=page_size, after=after, before=before)
        try:
            async for raw, items, _more in pages:
                assert raw is not None  # noqa: S101 - decoded in this task
                try:
                    runs = structure_runs(raw, items, thread_id=thread_id)
                except RunListError as exc:
                    self._scrub(exc)
                    raise
                for run in runs:
                    yield run
        finally:
            await pages.aclose()

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
