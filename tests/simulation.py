"""A rate-limited server and a client's traffic control, in simulated time.

``simulate`` runs ``workers`` requests at a time (each sends again as soon as its answer is
in, as the fan-out does) against the fake server's token bucket, through the real
:class:`LocalTrafficControl`, with a clock that only the simulation moves: what the control
decides is what a client would do, without sockets, a loop or the machine's speed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import attrs

from aiorunlist import Pacing
from aiorunlist._attempts import retry_hint
from aiorunlist._control import LocalTrafficControl
from aiorunlist.testing import RateLimit
from aiorunlist.testing._server import _Bucket

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the local control's methods)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the coroutine suspended")  # pragma: no cover


@attrs.define
class Outcome:
    ok: int = 0
    throttled: int = 0
    #: Requests that met more 429s in a row than the default retries (2) allow: a client
    #: would have given up on their thread (the simulation sends them again).
    failed: int = 0
    seconds: float = 0.0
    limit: RateLimit | None = None

    @property
    def share(self) -> float:
        """Successes over what the bucket allowed in the time."""
        assert self.limit is not None
        return self.ok / (self.limit.requests_per_second * self.seconds + self.limit.burst)

    @property
    def throttled_per_100(self) -> float:
        return 100 * self.throttled / max(1, self.ok)


def simulate(
    limit: RateLimit,
    *,
    pacing: Pacing | None = None,
    seconds: float = 30.0,
    workers: int = 32,
    latency: float = 0.002,
    noise: float = 0.0,
    stalls: float = 0.0,
    stall: float = 0.004,
    learned: float | None = None,
    seed: int = 0,
) -> Outcome:
    """``workers`` greedy requesters for ``seconds`` against ``limit``; what got through.

    ``noise`` is the share of requests the bucket lets through that get a 429 all the same
    (a server in trouble, not a limit), with ``retry-after-ms: 1``.

    ``stalls`` is the share of the time the client's event loop is held up (decoding pages,
    other processes on the same cores, garbage collection), in stalls of ``stall`` seconds
    on average (exponentially distributed, as are the free times between them): what falls
    due in a stall happens when it ends, and the control sees that late clock, as a real
    one does. One loop runs every request, so a stall holds them all up at once.

    ``learned`` starts the client at that pace, as if a burst of 429s had just set it (a
    first measurement that counted too few, say).
    """
    chance = random.Random(seed)
    now = 0.0
    control = LocalTrafficControl(pacing, budget=None, clock=lambda: now)
    if learned is not None:
        pacer = control.pacer
        pacer.rate = pacer.peak = learned
        pacer.last_decrease = now
        pacer.sent.extend(-t / learned for t in range(round(learned), 0, -1))  # the past second
    bucket = _Bucket(limit)
    bucket.at = 0.0
    outcome = Outcome(limit=limit)
    # (time, sequence, worker, phase): phase "ready" asks to send; "answer" records.
    events: list[tuple[float, int, int, str, dict[str, str], bool]] = []
    sequence = 0

    def push(at: float, worker: int, phase: str, headers: dict[str, str], ok: bool) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (at, sequence, worker, phase, headers, ok))

    streak = [0] * workers  # 429s in a row, per worker
    for worker in range(workers):
        push(0.0, worker, "ready", {}, False)
    clock = 0.0  # the loop's time: never earlier than the last event it handled
    stalled, free = 0.0, 0.0  # the loop is held up from stalled until free

    def stall_until(at: float) -> float:
        """When the loop handles what falls due ``at``."""
        nonlocal stalled, free
        while stalls > 0 and free <= at:
            stalled = free + chance.expovariate((1 - stalls) / (stall * stalls))
            free = stalled + chance.expovariate(1 / stall)
        return free if stalled <= at < free else at

    while events:
        now, _, worker, phase, headers, ok = heapq.heappop(events)
        now = clock = stall_until(max(now, clock))
        if now > seconds:
            break
        if phase == "ready":
            wait = run(control.reserve())
            if wait > 0:
                push(now + wait, worker, "ready", {}, False)
                continue
            allowed, answer = bucket.take(now + latency / 2)
            if allowed and noise and chance.random() < noise:
                allowed, answer = False, {"retry-after-ms": "1"}
            push(now + latency, worker, "answer", answer, allowed)
            continue
        # The answer is in.
        if ok:
            outcome.ok += 1
            streak[worker] = 0
            run(control.record(200, headers, ok=True))
            push(now, worker, "ready", {}, False)
        else:
            outcome.throttled += 1
            streak[worker] += 1
            if streak[worker] == 3:
                outcome.failed += 1
            run(control.record(429, headers, ok=False))
            push(now + (retry_hint(headers) or 0.5), worker, "ready", {}, False)
    outcome.seconds = seconds
    return outcome
