"""Traffic control shared by every request of one client: retry budget, pause, pacing.

No I/O and no clock of its own: every method takes ``now`` (seconds, monotonic), so all of it
is tested without a loop.

* :class:`RetryBudget` is botocore's retry quota: each retry spends tokens from a bucket that
  a clean success refills, so during an outage retries stop multiplying traffic.
* :class:`Pacer` keeps the shared pause (a ``Retry-After`` seen by one request makes
  every request of the client wait) and the pacing (:class:`Pacing`): a fixed rate, and an
  adaptive mode that is off until the first throttle, then halves the rate on each 429 and
  grows it back by 10% per success (AIMD; a burst of 429s within half a second counts once),
  and that also slows down ahead of a throttle when ``x-ratelimit-remaining-requests`` runs
  low before ``x-ratelimit-reset-requests``.
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping

import attrs

from ._attempts import retry_hint
from ._protocol import parse_go_duration

__all__ = [
    "LocalTrafficControl",
    "Pacer",
    "Pacing",
    "RateLimitInfo",
    "RetryBudget",
    "TrafficControl",
    "pause_from_headers",
]


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@attrs.frozen
class Pacing:
    """How fast a client may send requests.

    ``Pacing(requests_per_second=5)`` spaces requests evenly at 5 per second;
    ``Pacing.per_minute(600)`` is the same. ``Pacing(adaptive=True)`` sends as fast as the
    concurrency allows until the server throttles (a 429, or ``x-ratelimit-remaining-requests``
    running low), then slows down and speeds back up as requests succeed. Both together start
    at the fixed rate and adapt from there.
    """

    requests_per_second: float | None = attrs.field(default=None)
    adaptive: bool = False
    #: The slowest the adaptive mode will go.
    min_requests_per_second: float = attrs.field(default=0.5)

    @requests_per_second.validator
    def _check_rate(self, _attribute: object, value: float | None) -> None:
        if value is not None and not (_finite(value) and value > 0):
            raise ValueError(f"requests_per_second must be a finite number > 0, got {value!r}")

    @min_requests_per_second.validator
    def _check_floor(self, _attribute: object, value: float) -> None:
        if not (_finite(value) and value > 0):
            raise ValueError(
                f"min_requests_per_second must be a finite number > 0 (a server's headers could "
                f"otherwise stop the client), got {value!r}"
            )

    @classmethod
    def per_minute(cls, requests: float, *, adaptive: bool = False) -> Pacing:
        """A fixed rate given per minute (rate-limit tiers are often quoted that way)."""
        if not requests > 0:
            raise ValueError(f"requests per minute must be > 0, got {requests!r}")
        return cls(requests_per_second=requests / 60, adaptive=adaptive)


@attrs.frozen
class RateLimitInfo:
    """The rate-limit headers of the latest response (``Client.rate_limit``).

    Each field is ``None`` when the server did not send its header. Reset times are seconds
    (the headers use Go durations such as ``6m0s``); ``observed_at`` is the
    :func:`time.monotonic` reading of when the response arrived.
    """

    limit_requests: int | None
    remaining_requests: int | None
    reset_requests: float | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens: float | None
    observed_at: float

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float) -> RateLimitInfo | None:
        """Read ``x-ratelimit-*`` headers; ``None`` when there are none."""
        if "x-ratelimit-remaining-requests" not in headers and (
            "x-ratelimit-remaining-tokens" not in headers
        ):
            return None

        def integer(name: str) -> int | None:
            try:
                return int(headers[name])
            except (KeyError, ValueError):
                return None

        def duration(name: str) -> float | None:
            try:
                return parse_go_duration(headers[name])
            except (KeyError, ValueError):
                return None

        return cls(
            limit_requests=integer("x-ratelimit-limit-requests"),
            remaining_requests=integer("x-ratelimit-remaining-requests"),
            reset_requests=duration("x-ratelimit-reset-requests"),
            limit_tokens=integer("x-ratelimit-limit-tokens"),
            remaining_tokens=integer("x-ratelimit-remaining-tokens"),
            reset_tokens=duration("x-ratelimit-reset-tokens"),
            observed_at=now,
        )


class RetryBudget:
    """A bucket of retry tokens shared by all requests of a client.

    A retry costs ``retry_cost`` tokens (``timeout_cost`` after a timeout or a dropped
    connection, which are the most expensive failures to repeat). A success refunds what its
    own retries cost, or adds ``success_refill`` when it needed none. An empty bucket means
    no more retries until successes refill it.
    """

    __slots__ = ("available", "capacity", "retry_cost", "success_refill", "timeout_cost")

    def __init__(
        self,
        capacity: int = 500,
        *,
        retry_cost: int = 5,
        timeout_cost: int = 10,
        success_refill: int = 1,
    ) -> None:
        if capacity < 0:
            raise ValueError(f"retry_budget must be >= 0, got {capacity!r}")
        self.capacity = capacity
        self.available = capacity
        self.retry_cost = retry_cost
        self.timeout_cost = timeout_cost
        self.success_refill = success_refill

    def acquire(self, *, connection_failure: bool) -> int | None:
        """Take the tokens for one retry; ``None`` (and nothing taken) when there are too few."""
        cost = self.timeout_cost if connection_failure else self.retry_cost
        if self.available < cost:
            return None
        self.available -= cost
        return cost

    def success(self, spent: int) -> None:
        """A request succeeded after retries that cost ``spent`` tokens (0: none)."""
        self.available = min(self.capacity, self.available + (spent or self.success_refill))


class Pacer:
    """The shared pause and the pacing of one client (see the module docstring)."""

    __slots__ = (
        "adaptive",
        "fixed_rate",
        "last_decrease",
        "min_rate",
        "next_slot",
        "paused_until",
        "rate",
        "sent",
        "throttles",
    )

    #: Longest shared pause honoured from one response (seconds).
    MAX_PAUSE = 60.0
    #: Throttles closer together than this (seconds) count as one.
    DECREASE_INTERVAL = 0.5
    #: Growth of the adaptive rate per success.
    INCREASE = 1.1
    #: Rate-limit headers: slow down when fewer than this share of the window remains.
    LOW_REMAINING = 0.1

    def __init__(self, pacing: Pacing | None) -> None:
        self.fixed_rate = pacing.requests_per_second if pacing else None
        self.adaptive = bool(pacing and pacing.adaptive)
        self.min_rate = pacing.min_requests_per_second if pacing else 0.5
        #: The current rate limit in requests per second (``None``: unlimited).
        self.rate: float | None = self.fixed_rate
        self.next_slot = 0.0
        self.last_decrease = float("-inf")
        self.paused_until = 0.0
        self.sent: deque[float] = deque()
        #: How many throttles (429s) the client has seen.
        self.throttles = 0

    def wait(self, now: float) -> float:
        """How long a request must wait before it may go (the pause, then the pacing)."""
        start = max(now, self.paused_until)
        if self.rate is not None:
            start = max(start, self.next_slot)
        return start - now

    def book(self, now: float) -> None:
        """A request goes now (call only once :meth:`wait` says 0): take the pacing slot.

        Booking when the request really leaves, not when it starts waiting, means a request
        cancelled while it waits leaves no slot behind.
        """
        if self.rate is not None:
            self.next_slot = max(self.next_slot, now) + 1.0 / self.rate
        if self.adaptive:
            self.sent.append(now)
            while self.sent and self.sent[0] < now - 1.0:
                self.sent.popleft()

    def pause(self, now: float, seconds: float) -> None:
        """Make every request of the client wait ``seconds`` from ``now`` (capped)."""
        if seconds > 0:
            self.paused_until = max(self.paused_until, now + min(seconds, self.MAX_PAUSE))

    def throttled(self, now: float) -> None:
        """A 429 arrived: in adaptive mode, halve the rate actually achieved."""
        self.throttles += 1
        if not self.adaptive or now < self.last_decrease + self.DECREASE_INTERVAL:
            return  # one burst of 429s is one signal: slow down once for it
        self.last_decrease = now
        candidates = [r for r in (self.rate, float(len(self.sent))) if r]
        current = min(candidates) if candidates else 1.0
        self.rate = max(self.min_rate, current / 2)
        self.next_slot = max(self.next_slot, now + 1.0 / self.rate)

    def succeeded(self, now: float, headers: Mapping[str, str]) -> None:
        """A request succeeded: in adaptive mode, speed back up, or slow down ahead of a limit."""
        if not self.adaptive:
            return
        limit = _header_rate(headers, self.LOW_REMAINING)
        if limit is not None:
            self.rate = max(self.min_rate, min(self.rate or limit, limit))
            return
        if self.rate is None:
            return
        self.rate *= self.INCREASE
        ceiling = self.fixed_rate
        if ceiling is not None:
            self.rate = min(self.rate, ceiling)
        elif len(self.sent) and self.rate > 4 * len(self.sent):
            self.rate = None  # far above what is being sent: pacing is off again


def _header_rate(headers: Mapping[str, str], low: float) -> float | None:
    """The rate that spreads the remaining requests over the reset time, when they run low."""
    remaining_raw = headers.get("x-ratelimit-remaining-requests")
    reset_raw = headers.get("x-ratelimit-reset-requests")
    if remaining_raw is None or reset_raw is None:
        return None
    try:
        remaining = int(remaining_raw)
        reset = parse_go_duration(reset_raw)
    except ValueError:
        return None
    limit_raw = headers.get("x-ratelimit-limit-requests")
    try:
        limit = int(limit_raw) if limit_raw is not None else None
    except ValueError:
        limit = None
    if limit is not None and limit > 0 and remaining > low * limit:
        return None
    if limit is None and remaining > 10:
        return None
    return max(remaining, 1) / max(reset, 0.001)


def pause_from_headers(status: int, headers: Mapping[str, str], hint: float | None) -> float:
    """How long every request of the client should hold off after this answer (0: not at all).

    A 429 or 503 with a retry hint pauses everyone for that long; so does a rate-limit window
    with no requests left (``x-ratelimit-remaining-requests: 0``) until it resets.
    """
    pause = 0.0
    if status in (429, 503) and hint is not None and hint <= Pacer.MAX_PAUSE:
        pause = hint  # a longer hint is ignored, as retry_delay() ignores it
    if headers.get("x-ratelimit-remaining-requests") == "0":
        reset = headers.get("x-ratelimit-reset-requests")
        if reset is not None:
            with contextlib.suppress(ValueError):
                pause = max(pause, parse_go_duration(reset))
    return pause


class TrafficControl(abc.ABC):
    """The traffic state shared by every request of a client: the seam for sharing it wider.

    A client asks :meth:`reserve` before each request, tells :meth:`record` what came back,
    and asks :meth:`take_retry` before a retry. :class:`LocalTrafficControl` keeps that state
    in the process (the default); an implementation over a shared store lets a fleet of
    processes share one pause, one pace and one retry budget. Pass one as
    ``Client(control=...)``.
    """

    @abc.abstractmethod
    async def reserve(self) -> float:
        """Ask to send a request now: ``0`` books the slot; else seconds to wait, then ask
        again (the shared pause or the pacing)."""

    @abc.abstractmethod
    async def record(
        self, status: int, headers: Mapping[str, str], *, ok: bool, spent: int = 0
    ) -> None:
        """An answer arrived (``status`` 0: none did). ``ok``: the page was had, after
        retries that cost ``spent`` budget tokens."""

    @abc.abstractmethod
    async def take_retry(self, *, connection_failure: bool) -> int | None:
        """Take the budget tokens for one retry; ``None`` when the budget is spent."""

    @abc.abstractmethod
    async def refund(self, tokens: int) -> None:
        """Give back ``tokens`` taken for a retry that was never made."""


class LocalTrafficControl(TrafficControl):
    """The traffic state of one client, in this process: a :class:`Pacer` and a budget.

    :param pacing: the client's :class:`Pacing` (``None``: only the shared pause).
    :param budget: the retry budget's capacity in tokens (``None``: no budget).
    :param clock: monotonic seconds; tests pass a fake clock.
    """

    __slots__ = ("budget", "clock", "pacer")

    def __init__(
        self,
        pacing: Pacing | None = None,
        budget: int | None = 500,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pacer = Pacer(pacing)
        self.budget = None if budget is None else RetryBudget(budget)
        self.clock = clock

    async def reserve(self) -> float:
        """See :meth:`TrafficControl.reserve`."""
        now = self.clock()
        wait = self.pacer.wait(now)
        if wait <= 0:
            self.pacer.book(now)
            return 0.0
        return wait

    async def record(
        self, status: int, headers: Mapping[str, str], *, ok: bool, spent: int = 0
    ) -> None:
        """See :meth:`TrafficControl.record`."""
        pacer = self.pacer
        now = self.clock()
        if ok:
            if self.budget is not None:
                self.budget.success(spent)
            pacer.succeeded(now, headers)
            if headers.get("x-ratelimit-remaining-requests") == "0":  # none left: wait it out
                pacer.pause(now, pause_from_headers(status, headers, None))
            return
        if status == 429:
            pacer.throttled(now)
        if status:
            pacer.pause(now, pause_from_headers(status, headers, retry_hint(headers)))

    async def take_retry(self, *, connection_failure: bool) -> int | None:
        """See :meth:`TrafficControl.take_retry`."""
        if self.budget is None:
            return 0
        return self.budget.acquire(connection_failure=connection_failure)

    async def refund(self, tokens: int) -> None:
        """See :meth:`TrafficControl.refund`."""
        if self.budget is not None and tokens:
            self.budget.available = min(self.budget.capacity, self.budget.available + tokens)
