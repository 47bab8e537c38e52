"""The attempts of one page request, without I/O: when to give up, how long to wait.

The client asks :class:`Attempts` after each failure: retry after a delay, or raise (the
error is not retryable, ``max_retries`` is reached, or the wait would pass the page's
deadline). The clock is passed in, so every decision is tested without an event loop. The
traffic shared by all requests (pause, pacing, retry budget) is :mod:`aiorunlist._control`'s.

"Retryable" has one meaning, the error's own ``retryable`` attribute: set from the status and
the server's ``x-should-retry`` for status errors, from the kind of failure for the others.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from typing import Any

import attrs

from ._text import shown
from .exceptions import APIConnectionError, APITimeoutError, RunListError

__all__ = [
    "Attempts",
    "Retries",
    "Timeouts",
    "retry_delay",
    "retry_hint",
]

#: Longest wait honoured from one ``retry-after`` hint, and the cap on any parsed hint.
MAX_HINT = 60.0


def _number(what: str, value: object, *, allow_none: bool, positive: bool) -> None:
    if value is None and allow_none:
        return
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        bound = "a finite number of seconds > 0" if positive else "a finite number >= 0"
        none = " or None" if allow_none else ""
        raise ValueError(f"{what} must be {bound}{none}, got {value!r}")


def _check_seconds(positive: bool, allow_none: bool) -> Any:
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        _number(attribute.name, value, allow_none=allow_none, positive=positive)

    return check


def _check_count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and attribute.name == "budget":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.frozen
class Retries:
    """How one page request is retried, for :class:`~aiorunlist.Client` ``retries=``.

    ``Retries(max_retries=5, initial_delay=1.0)``. A failed request is retried when its
    error is retryable (connection errors, timeouts, cut or unreadable bodies, 408, 409, 429,
    5xx, unless the server says ``x-should-retry: false``), up to ``max_retries`` times. The
    wait is the server's hint (``retry-after-ms``, then ``retry-after``) when it lies within
    ``max_hint`` seconds, else a jittered exponential backoff from ``initial_delay`` capped at
    ``max_delay``.

    ``budget`` is the retry budget shared by every request of the client: a retry spends 5
    tokens (10 after a connection failure); a success gives back what its retries spent, or
    adds 1. During an outage retries stop when it runs dry instead of multiplying traffic.
    ``None`` disables it.
    """

    max_retries: int = attrs.field(default=2, validator=_check_count)
    initial_delay: float = attrs.field(default=0.5, validator=_check_seconds(False, False))
    max_delay: float = attrs.field(default=8.0, validator=_check_seconds(False, False))
    budget: int | None = attrs.field(default=500, validator=_check_count)
    max_hint: float = attrs.field(default=MAX_HINT, validator=_check_seconds(True, False))


@attrs.frozen
class Timeouts:
    """Time limits, for :class:`~aiorunlist.Client` ``timeout=``; every value is in seconds.

    :param request: one HTTP request, from connecting to its last byte.
    :param connect: establishing a connection.
    :param read: the longest silence between two reads of an answer (``None``: no own limit).
    :param page: one page, all its retries and waits included (``None``: no limit). The
        client never sleeps past it.
    """

    request: float | None = attrs.field(default=60.0, validator=_check_seconds(True, True))
    connect: float | None = attrs.field(default=10.0, validator=_check_seconds(True, True))
    read: float | None = attrs.field(default=None, validator=_check_seconds(True, True))
    page: float | None = attrs.field(default=None, validator=_check_seconds(True, True))


def retry_hint(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, then ``retry-after``), if any.

    Whatever is not a finite number, or an HTTP date within reason, is no hint.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            pass
        else:
            if math.isfinite(ms):
                return ms / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return when - (time.time() if now is None else now)
    return seconds if math.isfinite(seconds) else None


def retry_delay(
    attempt: int,
    headers: Mapping[str, str],
    *,
    initial_delay: float = 0.5,
    max_delay: float = 8.0,
    max_hint: float = MAX_HINT,
    rng: random.Random | None = None,
    now: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    The server's hint comes first, honoured when it lies between 0 and ``max_hint``;
    otherwise exponential backoff from ``initial_delay``, capped at ``max_delay``, with up to
    25% jitter downwards.
    """
    hint = retry_hint(headers, now)
    if hint is not None and 0 <= hint <= max_hint:
        return hint
    backoff = min(initial_delay * 2.0 ** min(attempt, 64), max_delay)
    jitter = 1 - 0.25 * (rng or random).random()
    return max(backoff * jitter, 0.0)


@attrs.frozen
class Retry:
    """Retry after ``delay`` seconds; ``connection_failure`` prices it for the budget."""

    delay: float
    connection_failure: bool


class Attempts:
    """The attempts of one page request (no I/O; ``now`` is passed in).

    ``attempt`` counts the retries made so far; ``spent`` the budget tokens they cost.
    """

    __slots__ = ("attempt", "deadline", "page_timeout", "retries", "rng", "spent", "thread_id")

    def __init__(
        self,
        retries: Retries,
        *,
        thread_id: str,
        now: float,
        page_timeout: float | None,
        rng: random.Random,
    ) -> None:
        self.retries = retries
        self.thread_id = thread_id
        self.page_timeout = page_timeout
        self.deadline = None if page_timeout is None else now + page_timeout
        self.rng = rng
        self.attempt = 0
        self.spent = 0

    def time_left(self, now: float) -> float | None:
        """Seconds until the page's deadline (``None``: no deadline); raises once it passed."""
        if self.deadline is None:
            return None
        left = self.deadline - now
        if left <= 0:
            raise self.deadline_error()
        return left

    def extend(self, seconds: float) -> None:
        """Move the deadline by ``seconds`` (time spent waiting on the caller is not the page's)."""
        if self.deadline is not None:
            self.deadline += seconds

    def check_wait(self, wait: float, now: float, error: RunListError | None) -> None:
        """Raise if waiting ``wait`` seconds (for the pause or the pacing) passes the deadline.

        The error raised is the last failure (saying why it was not retried), or an
        :class:`~aiorunlist.APITimeoutError` before the first attempt.
        """
        if self.deadline is None or now + wait <= self.deadline:
            return
        if error is not None:
            error.not_retried = (
                f"waiting {wait:.1f}s for the server's pause or the pacing would pass "
                f"page_timeout={self.page_timeout}s"
            )
            raise error
        raise self.deadline_error()

    def after_failure(
        self, error: RunListError, headers: Mapping[str, str], now: float
    ) -> Retry | None:
        """What to do after ``error``: a :class:`Retry`, or ``None`` to raise it.

        When the only obstacle is the deadline, ``error.not_retried`` says so.
        """
        if not error.retryable or self.attempt >= self.retries.max_retries:
            return None
        r = self.retries
        delay = retry_delay(
            self.attempt,
            headers,
            initial_delay=r.initial_delay,
            max_delay=r.max_delay,
            max_hint=r.max_hint,
            rng=self.rng,
        )
        if self.deadline is not None and now + delay > self.deadline:
            error.not_retried = f"page_timeout={self.page_timeout}s would pass"
            return None
        return Retry(delay, isinstance(error, APIConnectionError))

    def budget_spent(self, error: RunListError) -> RunListError:
        """``error``, noting that the client's retry budget stopped the retry."""
        error.not_retried = "this client's retry budget is spent, too many requests failed recently"
        return error

    def retried(self, tokens: int) -> None:
        """A retry is being made; it cost ``tokens`` of the budget."""
        self.attempt += 1
        self.spent += tokens

    def deadline_error(self) -> APITimeoutError:
        """The error for a page whose ``page_timeout`` passed."""
        return APITimeoutError(
            f"listing runs of thread {shown(self.thread_id)}: page_timeout={self.page_timeout}s "
            f"passed after {self.attempt + 1} attempt(s)",
            thread_id=self.thread_id,
        )
