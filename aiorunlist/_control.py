"""Traffic control shared by every request of one client: retry budget, pause, pacing.

No I/O and no clock of its own: every method takes ``now`` (seconds, monotonic), so all of it
is tested without a loop (``tests/simulation.py`` runs it against a simulated rate-limited
server).

* :class:`RetryBudget` is botocore's retry quota: each retry spends tokens from a bucket that
  a clean success refills, so during an outage retries stop multiplying traffic.
* :class:`Pacer` keeps the shared pause (a ``Retry-After`` seen by one request makes every
  request of the client wait) and the pacing:

  - a fixed rate (:class:`Pacing`), a ceiling whatever else is learned;
  - the server's token bucket, when its answers carry ``x-ratelimit-limit-requests``,
    ``-remaining-requests`` and ``-reset-requests``: a bucket refills what it lacks in the
    reset time, so ``(limit - remaining) / reset`` is its rate (the median of the latest
    estimates). The client spends the tokens the server says are left, then goes at that
    rate. A 429 empties the modelled bucket; one that comes as a surprise halves the bursts
    the client allows itself (a per-minute limit enforced over shorter windows), and a burst
    of them trims the rate estimate by 5%, which successes win back slowly;
  - without such headers, learning from 429s (the default, and ``Pacing(adaptive=True)``;
    a fixed ``Pacing`` alone does not learn):
    a burst of 429s (at least three, and 5% of the answers of the past second: a stray one
    is no limit) sets the pace a little under what got past the limit (any answer but a
    429) in the past second; a rate that still meets 429s is measured again between them;
    in between the pace doubles each second (slow start) until the next 429, then grows by
    1% a second, and after two seconds without a 429, 20% a second (a limit measured too
    low, while the client or the server lagged, is found again within seconds). Within one
    episode of 429s the pace stays above half of what passed when it began. 429s no more
    frequent than twice those that come whatever the pace (:meth:`Pacer.noise`: a server in
    trouble answers a few at any rate) do not slow a learned pace down. Far above what is
    actually sent, pacing turns itself off again.

  A pace is a schedule: a waiting request that the event loop wakes late (it was busy
  decoding, or the machine's cores were) takes its slot late without pushing the later
  slots back, and waiting requests are told to come back one slot apart rather than all
  waking for every slot.
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
from .exceptions import RunListError

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
    ``Pacing.per_minute(600)`` is the same, and the client never goes faster, though it
    goes slower when the server's rate-limit headers or 429s say so.

    Without a ``Pacing`` a client sends as fast as the concurrency allows, keeps to the
    token bucket that ``x-ratelimit-*`` headers describe, and, for servers that send none,
    learns a pace from their 429s. ``Pacing(adaptive=True)`` is that same behaviour (it was
    opt-in once); with a rate too, it starts from that rate and never exceeds it.
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
        "capacity",
        "contended",
        "estimates",
        "fixed_rate",
        "last_decrease",
        "line",
        "min_rate",
        "next_slot",
        "oks",
        "paused_until",
        "peak",
        "probing",
        "rate",
        "refill",
        "scale",
        "seconds",
        "sent",
        "slow_start",
        "started",
        "throttle_times",
        "throttles",
        "tokens",
        "tokens_at",
    )

    #: Longest shared pause honoured from one response (seconds).
    MAX_PAUSE = 60.0
    #: Throttles closer together than this (seconds) count as one.
    DECREASE_INTERVAL = 0.5
    #: Throttles this far apart (seconds) or closer measure the server's rate between them.
    MEASURE = 5.0
    #: Throttles this close (seconds) to the one that slowed down are the same burst.
    BURST = 0.1
    #: Growth of the learned rate per success, in requests per second: a rate of N grows by
    #: 1% a second (N successes a second).
    INCREASE = 0.01
    #: A throttle without rate-limit headers sets the rate to this share of the successes of
    #: the past second.
    BACKOFF = 0.97
    #: A 429 from a server whose bucket is known scales its refill estimate down by this; each
    #: success with rate-limit headers brings it back up by ``SCALE_UP``.
    SCALE_DOWN = 0.95
    SCALE_UP = 0.0005
    #: How many reset-based refill estimates the bucket takes the median of.
    ESTIMATES = 9
    #: Within one episode of 429s (none for ``MEASURE`` seconds ends it), a learned rate goes
    #: no lower than this share of what passed when the episode began: 429s that keep coming
    #: whatever the pace are the server's trouble, not a limit, and must not bring the client
    #: to a crawl.
    FLOOR = 0.5
    #: Unpaced, a client starts learning only when 429s are this share of the answers of the
    #: past second, and at least three: a fan-out that overruns a limit gets many at once,
    #: while a server in trouble may answer a stray 429 now and then whatever the pace.
    FIRST = 0.05
    #: A paced request that was waiting for its slot and goes late (the event loop was busy)
    #: does not push the later slots back by up to this long (seconds): the pace keeps to its
    #: schedule, or a loop late by a millisecond a slot would lose that millisecond each time.
    LATE = 0.05
    #: A learned pace that meets no 429 for this long (seconds) probes: it grows faster.
    PROBE = 2.0
    #: How fast a probe grows the pace: 20% a second (a rate of N gets N successes a second).
    PROBE_INCREASE = 0.2
    #: The longest (seconds) a waiting request is told to come back after its slot would be
    #: free, to let those told to wait before it go first.
    QUEUE = 0.1
    #: How many seconds of answers tell the share of 429s that comes whatever the pace.
    NOISE_SECONDS = 10

    def __init__(self, pacing: Pacing | None) -> None:
        self.fixed_rate = pacing.requests_per_second if pacing else None
        # Learning from 429s is the default; a fixed Pacing learns only when told to.
        self.adaptive = pacing is None or pacing.adaptive
        self.min_rate = pacing.min_requests_per_second if pacing else 0.5
        #: The current pace in requests per second (``None``: unlimited): the fixed rate, or
        #: what was learned from 429s without rate-limit headers.
        self.rate: float | None = self.fixed_rate
        self.next_slot = 0.0
        #: A request has waited for the pacing slot (it goes on schedule, not from now).
        self.contended = False
        #: The latest time a waiting request was told to come back at (see :meth:`queue`).
        self.line = 0.0
        self.last_decrease = float("-inf")
        self.paused_until = 0.0
        self.sent: deque[float] = deque()
        self.oks: deque[float] = deque()
        self.started: float | None = None
        self.peak = 0.0
        self.slow_start = False
        self.probing = False
        #: How many throttles (429s) the client has seen.
        self.throttles = 0
        self.throttle_times: deque[float] = deque()
        #: [second, answers, 429s] of the latest seconds, paced: the share of 429s that
        #: comes whatever the pace (a server in trouble) is read from those with few.
        self.seconds: deque[list[int]] = deque(maxlen=self.NOISE_SECONDS + 1)
        # The server's bucket, as its rate-limit headers describe it (refill None: unknown).
        self.capacity = 0.0
        self.refill: float | None = None
        self.scale = 1.0
        self.tokens = 0.0
        self.tokens_at = 0.0
        self.estimates: deque[float] = deque(maxlen=self.ESTIMATES)

    def _tokens(self, now: float) -> float:
        return min(self.capacity, self.tokens + (now - self.tokens_at) * (self.refill or 0.0))

    def wait(self, now: float) -> float:
        """How long a request must wait before it may go (the pause, then the pacing)."""
        start = max(now, self.paused_until)
        if self.rate is not None and self.next_slot > start:
            start = self.next_slot
            self.contended = True  # a request waits for the slot: keep to the schedule
        if self.refill is not None:
            tokens = self._tokens(start)
            if tokens < 1:
                start += (1 - tokens) / self.refill
        return start - now

    def queue(self, now: float, wait: float) -> float:
        """When a request told to ``wait`` should ask again: one pacing slot after the
        requests already told to wait, rather than all at the first free slot.

        Asking again is cheap, but not for dozens of requests on every slot: they would all
        wake, one would go, and the others would go back to sleep, keeping the event loop
        busy and late. A request that finds its slot taken when it comes back (by one that
        came in between) queues again; a wait shorter than a slot is not queued, and none is
        queued more than ``QUEUE`` seconds further (those before it may never come back).
        """
        interval = self.interval()
        due = now + wait
        if interval is None or wait < interval / 2:
            return wait
        if self.line > due - interval / 2:
            # Behind the others, but no further than QUEUE: a request told to wait may be
            # cancelled and never come back, and must not hold later ones up for long.
            due = min(self.line + interval, due + self.QUEUE)
        self.line = max(self.line, due)
        return due - now

    def interval(self) -> float | None:
        """The time between two requests at the pace (``None``: no pace).

        The server's bucket (``refill``) is no pace here: its tokens pile up while the loop
        is held up, and the requests that wait take them all at once when it is free again,
        which requests queued a slot apart would not."""
        return None if self.rate is None else 1.0 / self.rate

    def book(self, now: float) -> None:
        """A request goes now (call only once :meth:`wait` says 0): take the pacing slot.

        Booking when the request really leaves, not when it starts waiting, means a request
        cancelled while it waits leaves no slot behind.
        """
        if self.rate is not None:
            # Waited for: the slot was this request's since it fell due, however late the
            # request took it. Not waited for: the pace starts again from now (idle time is
            # not banked into a burst).
            late = self.LATE if self.contended else 0.0
            self.next_slot = max(self.next_slot, now - late) + 1.0 / self.rate
            # Still behind the schedule: the requests that waited through the same stall of
            # the loop go too, on the slots they missed.
            self.contended = self.contended and self.next_slot <= now
        if self.refill is not None:
            self.tokens = self._tokens(now) - 1
            self.tokens_at = now
        if self.adaptive:
            if self.started is None:
                self.started = now
            sent = self.sent
            sent.append(now)
            while sent[0] < now - 1.0:
                sent.popleft()

    def pause(self, now: float, seconds: float) -> None:
        """Make every request of the client wait ``seconds`` from ``now`` (capped)."""
        if seconds > 0:
            self.paused_until = max(self.paused_until, now + min(seconds, self.MAX_PAUSE))

    def observe(self, now: float, headers: Mapping[str, str]) -> bool:
        """Read the rate-limit headers of an answer into the model of the server's bucket;
        ``False`` when they do not describe one (no limit, remaining and reset)."""
        remaining_raw = headers.get("x-ratelimit-remaining-requests")
        if remaining_raw is None:
            return False
        try:
            limit = int(headers["x-ratelimit-limit-requests"])
            remaining = int(remaining_raw)
            reset = parse_go_duration(headers["x-ratelimit-reset-requests"])
        except (KeyError, ValueError):
            return False
        if limit <= 0 or remaining < 0 or not math.isfinite(reset):
            return False
        known = self.refill is not None
        if reset > 0 and limit > remaining:
            # A bucket refills what it lacks in the reset time: that is its rate (a little
            # over it when the count is rounded; the server's count then holds it back).
            self.estimates.append((limit - remaining) / reset)
            ordered = sorted(self.estimates)
            self.refill = max(self.min_rate, ordered[len(ordered) // 2] * self.scale)
        if self.refill is None:
            return False
        # Trust the lower count: ours knows what is in flight, the server's what others sent.
        self.scale = min(1.0, self.scale + self.SCALE_UP)  # a 429 is forgotten slowly
        if not known:
            self.capacity = float(limit)
            self.tokens = float(remaining)
        else:
            self.capacity = min(self.capacity, float(limit))
            self.tokens = min(self._tokens(now), float(remaining))
        self.tokens_at = now
        return True

    def throttled(self, now: float, headers: Mapping[str, str] | None = None) -> None:
        """A 429 arrived: the server's bucket is empty; without its headers (and when
        adaptive), pace at a little under what succeeded in the past second."""
        self.throttles += 1
        before = self._tokens(now)
        if self.observe(now, headers or {}) or self.refill is not None:
            # The server's bucket is known: whatever the headers say, none are left. If this
            # came as a surprise, the server holds fewer than its headers said (a per-minute
            # limit enforced over shorter windows): allow smaller bursts from now on.
            self.tokens = min(self._tokens(now), 0.0)
            self.tokens_at = now
            if before >= 1:
                self.capacity = max(1.0, min(self.capacity, before, self.refill or 1.0) / 2)
            # A 429 says the server refills slower than its (rounded) headers made it look;
            # one burst of them says it once.
            if now >= self.last_decrease + self.DECREASE_INTERVAL:
                self.last_decrease = now
                self.scale = max(0.1, self.scale * self.SCALE_DOWN)
                self.refill = max(self.min_rate, (self.refill or 0.0) * self.SCALE_DOWN)
            return
        if not self.adaptive:
            return
        self._count(now, True)
        recent = self.throttle_times
        recent.append(now)
        while recent[0] < now - 1.0:
            recent.popleft()
        passed = sum(1 for t in self.oks if t > now - 1.0)
        answers = len(recent) + passed
        if self.rate is None and (len(recent) < 3 or len(recent) < self.FIRST * answers):
            return  # stray 429s among many answers: no limit to learn yet
        if self.rate is not None and len(recent) <= 2 * self.noise() * answers:
            return  # no more 429s than come whatever the pace: not the limit's
        if now < self.last_decrease + self.DECREASE_INTERVAL:
            # One burst of 429s is one signal: slow down once for it. A later one within the
            # interval still says the rate is high enough: stop growing it fast.
            if now > self.last_decrease + self.BURST:
                self.slow_start = False
            return
        since = now - self.last_decrease
        oks = self.oks
        if since <= self.MEASURE:
            # Over the limit then and now: the server let through its rate in between (the
            # answers of the first moments were sent before then, and are not counted).
            start = self.last_decrease + self.BURST
            achieved = sum(1 for t in oks if t > start) / (now - start)
        else:
            # The first throttle of an episode: what succeeded in the past second (or since
            # the start, if sooner); the slow start makes up for an undercount.
            while oks and oks[0] < now - 1.0:
                oks.popleft()
            started = self.started if self.started is not None else now
            achieved = len(oks) / min(1.0, max(0.25, now - started))
        achieved = max(1.0, achieved)
        if since > self.MEASURE:
            self.peak = achieved  # a new episode
        achieved = max(achieved, self.peak * self.FLOOR)
        self.last_decrease = now
        self.slow_start = self.rate is None
        self.probing = False
        self.rate = max(self.min_rate, min(self.rate or achieved, achieved) * self.BACKOFF)
        if self.fixed_rate is not None:
            self.rate = min(self.rate, self.fixed_rate)
        self.next_slot = max(self.next_slot, now + 1.0 / self.rate)

    def _count(self, now: float, throttled: bool) -> None:
        if self.rate is None:
            return  # unpaced, 429s say little about what comes whatever the pace
        second = int(now)
        seconds = self.seconds
        if not seconds or seconds[-1][0] != second:
            seconds.append([second, 0, 0])
        seconds[-1][1] += 1
        seconds[-1][2] += throttled

    def noise(self) -> float:
        """The share of answers that are 429s whatever the pace (a server in trouble): the
        lower third of the shares of the latest whole seconds, paced, that had fewer than
        ``FIRST`` (0 until there are five such seconds)."""
        shares = sorted(t / a for _, a, t in list(self.seconds)[:-1] if t < self.FIRST * a)
        return shares[len(shares) // 3] if len(shares) >= 5 else 0.0

    def passed(self, now: float) -> None:
        """An answer other than a 429 came: the request got past the server's rate limit."""
        self._count(now, False)
        self.oks.append(now)
        if len(self.oks) > 4096:
            self.oks.popleft()

    def succeeded(self, now: float, headers: Mapping[str, str]) -> None:
        """A request succeeded: follow the server's headers, or speed a learned rate back up."""
        if self.observe(now, headers) or not self.adaptive:
            return
        self.passed(now)
        if self.rate is None:
            return
        if now > self.last_decrease + self.PROBE:
            # No 429 for a while: the limit may be far above the pace (a first measurement
            # taken while the client or the server lagged counts too few): look for it again.
            # The next 429 begins a new episode, measured afresh.
            self.probing = True
            self.last_decrease = float("-inf")
        # Slow start doubles the rate each second (one more per success), a probe grows it by
        # PROBE_INCREASE a second, as long as the client keeps up with it (a pace far above
        # what is sent says nothing, and would turn pacing off); else 1% a second (a rate of
        # N gets N successes a second).
        if not (self.slow_start or self.probing):
            self.rate += self.INCREASE
        elif self.rate < 2 * len(self.sent):
            self.rate += 1.0 if self.slow_start else self.PROBE_INCREASE
        ceiling = self.fixed_rate
        if ceiling is not None:
            self.rate = min(self.rate, ceiling)
        elif len(self.sent) and self.rate > 4 * len(self.sent):
            self.rate = None  # far above what is being sent: pacing is off again


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

    async def halt(self, error: RunListError) -> None:  # noqa: B027 - optional, no-op default
        """An answer no retry or wait cures came (a 401, an exhausted quota): a control shared
        by a fleet stops every client sharing it. The default does nothing (each request
        raises its own error)."""


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
        return self.pacer.queue(now, wait)

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
            if pacer.refill is None and headers.get("x-ratelimit-remaining-requests") == "0":
                pacer.pause(now, pause_from_headers(status, headers, None))  # wait it out
            return
        if status == 429:
            pacer.throttled(now, headers)
        elif status and not pacer.observe(now, headers) and pacer.adaptive:
            pacer.passed(now)  # a failure, but not the rate limit's
        if status:
            # A known bucket says when the next request may go; "none left" is then no pause.
            read = headers if pacer.refill is None else {}
            pacer.pause(now, pause_from_headers(status, read, retry_hint(headers)))

    async def take_retry(self, *, connection_failure: bool) -> int | None:
        """See :meth:`TrafficControl.take_retry`."""
        if self.budget is None:
            return 0
        return self.budget.acquire(connection_failure=connection_failure)

    async def refund(self, tokens: int) -> None:
        """See :meth:`TrafficControl.refund`."""
        if self.budget is not None and tokens:
            self.budget.available = min(self.budget.capacity, self.budget.available + tokens)
