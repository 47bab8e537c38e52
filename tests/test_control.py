"""Retry budget, shared pause and pacing, without a loop (time is passed in)."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiorunlist import Pacing
from aiorunlist._control import Pacer, RetryBudget, pause_from_headers
from aiorunlist.testing import RateLimit
from tests.simulation import simulate


def go(control: Pacer, now: float) -> float:
    """Wait as a request would, then book: returns how long it waited in all."""
    waited = 0.0
    while (wait := control.wait(now + waited)) > 0:
        waited += wait
    control.book(now + waited)
    return waited


def test_budget_runs_dry_and_refills() -> None:
    budget = RetryBudget(20, retry_cost=5, timeout_cost=10, success_refill=1)
    assert budget.acquire(connection_failure=True) == 10
    assert budget.acquire(connection_failure=False) == 5
    assert budget.acquire(connection_failure=False) == 5
    assert budget.acquire(connection_failure=False) is None
    assert budget.available == 0
    budget.success(5)  # a success after one retry gives that retry back
    assert budget.available == 5
    for _ in range(100):
        budget.success(0)
    assert budget.available == 20  # never above capacity


@given(st.lists(st.sampled_from(["retry", "timeout", "ok", "ok-after"]), max_size=200))
def test_budget_stays_within_bounds(events: list[str]) -> None:
    budget = RetryBudget(50)
    retries = 0
    for event in events:
        if event in ("retry", "timeout"):
            if budget.acquire(connection_failure=event == "timeout") is not None:
                retries += 1
        else:
            budget.success(5 if event == "ok-after" else 0)
        assert 0 <= budget.available <= 50
    # Without successes, no more than capacity / cost retries can ever happen.
    if not any(e.startswith("ok") for e in events):
        assert retries <= 50 // 5


def test_fixed_pacing_spaces_requests() -> None:
    control = Pacer(Pacing(requests_per_second=4))
    waits = [go(control, 10.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert go(control, 20.0) == 0.0  # idle time is not banked into a burst


def test_waiting_without_going_books_nothing() -> None:
    control = Pacer(Pacing(requests_per_second=1))
    go(control, 0.0)
    for _ in range(10):  # ten requests that waited and were cancelled
        assert control.wait(0.5) == pytest.approx(0.5)
    assert go(control, 1.0) == 0.0


def test_a_late_request_does_not_push_the_schedule_back() -> None:
    control = Pacer(Pacing(requests_per_second=100))
    go(control, 0.0)
    assert control.wait(0.0) == pytest.approx(0.01)  # this one waits for its slot...
    control.book(0.014)  # ...and the loop wakes it 4 ms late
    assert control.wait(0.014) == pytest.approx(0.006)  # the next slot is still at 20 ms
    # A stall of 30 ms: the slots it missed and the one due now go at once, then the pace
    # resumes.
    assert control.wait(0.0) > 0
    assert [go(control, 0.05) for _ in range(4)] == pytest.approx([0, 0, 0, 0])
    assert go(control, 0.05) == pytest.approx(0.01)
    # Beyond Pacer.LATE, the slots are lost: no burst after a long stall.
    assert control.wait(0.0) > 0
    assert [go(control, 1.0) for _ in range(round(Pacer.LATE * 100) + 2)][-1] > 0


def test_waiting_requests_come_back_one_slot_apart() -> None:
    control = Pacer(Pacing(requests_per_second=100))
    go(control, 0.0)
    # Five requests that must wait are told to come back on five slots, not all on the next.
    assert [control.queue(0.0, control.wait(0.0)) for _ in range(5)] == pytest.approx(
        [0.01, 0.02, 0.03, 0.04, 0.05]
    )
    # Each finds its slot free when it comes back.
    for slot in (0.01, 0.02, 0.03):
        assert control.wait(slot) == 0
        control.book(slot)
    # One that comes back a hair early is not sent to the back of the line.
    assert control.queue(0.04 - 1e-9, control.wait(0.04 - 1e-9)) == pytest.approx(1e-9)
    # Requests told to wait that never come back (cancelled) hold a new one up for no
    # more than Pacer.QUEUE beyond its slot.
    for _ in range(30):
        control.queue(0.04, control.wait(0.04))
    assert control.queue(0.04, control.wait(0.04)) <= control.wait(0.04) + Pacer.QUEUE + 1e-9
    # Without a pace (only a shared pause) there is nothing to space them by.
    paused = Pacer(None)
    paused.pause(0.0, 1.0)
    assert [paused.queue(0.0, paused.wait(0.0)) for _ in range(3)] == [1.0, 1.0, 1.0]


def test_per_minute() -> None:
    assert Pacing.per_minute(600).requests_per_second == pytest.approx(10)
    with pytest.raises(ValueError, match="requests_per_second"):
        Pacing(requests_per_second=0)
    with pytest.raises(ValueError, match="per minute"):
        Pacing.per_minute(-1)


def test_shared_pause_holds_everyone() -> None:
    control = Pacer(None)
    assert go(control, 0.0) == 0.0
    control.pause(1.0, 2.0)
    assert go(control, 1.5) == pytest.approx(1.5)
    assert go(control, 2.9) == pytest.approx(0.1)
    assert go(control, 3.0) == 0.0
    control.pause(5.0, 3600)
    assert go(control, 5.0) == Pacer.MAX_PAUSE


def rate_of(control: Pacer) -> float | None:
    return control.rate  # (read through a call: mypy does not narrow it for good)


def test_learning_is_off_until_the_first_throttle() -> None:
    for pacing in (None, Pacing(adaptive=True)):  # the default learns too
        control = Pacer(pacing)
        for i in range(40):
            assert go(control, i / 40) == 0.0  # 40 requests in one second: unpaced
            control.succeeded(i / 40, {})
        control.throttled(1.0)  # one 429 among 40 answers: a stray one
        assert rate_of(control) is None
        control.throttled(1.0)
        control.throttled(1.0)  # three, and 7% of the answers: a limit
        assert control.rate == pytest.approx(40 * Pacer.BACKOFF)  # what got through
        control.throttled(1.05)  # the same burst: no second decrease
        assert control.rate == pytest.approx(40 * Pacer.BACKOFF)
        assert go(control, 1.0) > 0
        rate = control.rate
        assert rate is not None
        control.succeeded(1.5, {})
        assert control.rate is not None
        assert control.rate > rate  # speeds back up


def test_slow_start_grows_only_a_pace_the_client_keeps_up_with() -> None:
    control = Pacer(None)
    for i in range(40):
        go(control, i / 40)
        control.succeeded(i / 40, {})
    for _ in range(3):
        control.throttled(1.0)  # learned: slow start from about 39 a second
    rate = control.rate
    assert rate is not None
    assert control.slow_start
    for i in range(10):  # the client stalls: 10 requests in the next second
        go(control, 2.0 + i / 10)
    for _ in range(100):
        control.succeeded(2.9, {})
    # A pace the client does not use is not grown (it would have doubled, passed four
    # times what is sent, and turned pacing off, to meet the limit unpaced again).
    assert control.rate == rate


def test_rate_limit_headers_describe_the_servers_bucket() -> None:
    control = Pacer(None)
    headers = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "200ms",
    }
    control.succeeded(0.0, headers)
    assert control.refill == pytest.approx(100.0)  # 20 lacking, full in 0.2 s
    waits = [go(control, 0.0) for _ in range(4)]
    assert waits == pytest.approx([0.01, 0.02, 0.03, 0.04])  # one token every 10 ms
    # Idle time fills the bucket up to its capacity, not beyond.
    assert [go(control, 10.0) for _ in range(21)][-1] == pytest.approx(0.01)


def test_per_minute_headers_give_the_same_rate() -> None:
    control = Pacer(None)
    headers = {
        "x-ratelimit-limit-requests": "6000",
        "x-ratelimit-remaining-requests": "5990",
        "x-ratelimit-reset-requests": "100ms",
    }
    control.succeeded(0.0, headers)
    assert control.refill == pytest.approx(100.0)
    assert control.tokens == 5990  # the first answer: trust the server's count
    control.throttled(0.01, {"x-ratelimit-limit-requests": "6000"})  # a 429 mid-window
    # A surprise: the server holds less than it said. Empty now, smaller bursts from now on,
    # and a little slower than the headers' rate until successes bring it back.
    assert go(control, 0.01) == pytest.approx(1 / (100 * Pacer.SCALE_DOWN))
    assert control.capacity == pytest.approx(50)  # at most half a second of its rate
    for _ in range(int((1 - Pacer.SCALE_DOWN) / Pacer.SCALE_UP) + 1):
        control.succeeded(1.0, headers)
    assert control.scale == pytest.approx(1.0)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining-requests": "3"},
        {"x-ratelimit-remaining-requests": "x", "x-ratelimit-limit-requests": "5"},
        {
            "x-ratelimit-remaining-requests": "3",
            "x-ratelimit-limit-requests": "5",
            "x-ratelimit-reset-requests": "soon",
        },
        {
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-limit-requests": "5",
            "x-ratelimit-reset-requests": "0s",
        },
    ],
)
def test_headers_that_describe_no_bucket_are_ignored(headers: dict[str, str]) -> None:
    control = Pacer(None)
    assert control.observe(0.0, headers) is False
    assert control.refill is None
    assert go(control, 0.0) == 0.0


def test_fixed_pacing_is_not_adapted() -> None:
    control = Pacer(Pacing(requests_per_second=5))
    control.throttled(0.0)
    assert control.rate == 5
    assert control.throttles == 1


@pytest.mark.parametrize("style", ["bucket", "per-minute", "none"])
@pytest.mark.parametrize("pacing", [None, Pacing(adaptive=True)], ids=["default", "adaptive"])
def test_a_rate_limited_server_is_used_to_its_limit(style: str, pacing: Pacing | None) -> None:
    # 100 requests/s in bursts of 20, 32 requests at a time, in simulated time.
    outcome = simulate(RateLimit(100, 20, style), pacing=pacing, seconds=20)
    assert outcome.share >= 0.97
    assert outcome.throttled_per_100 <= 2
    assert outcome.failed == 0  # no request met more 429s in a row than the retries allow


@pytest.mark.parametrize("pacing", [None, Pacing(adaptive=True)], ids=["default", "adaptive"])
@pytest.mark.parametrize(("stalls", "stall"), [(0.1, 0.004), (0.3, 0.004), (0.3, 0.01)])
def test_a_late_event_loop_keeps_the_learned_pace(
    pacing: Pacing | None, stalls: float, stall: float
) -> None:
    """Without headers, a loop held up now and then (decoding, other processes on the same
    cores) takes its paced slots late: the slots after them keep to the schedule, so the
    lateness is not lost on every slot (it cost a quarter of the limit)."""
    outcome = simulate(
        RateLimit(100, 20, "none"), pacing=pacing, seconds=20, stalls=stalls, stall=stall
    )
    assert outcome.share >= 0.97
    assert outcome.throttled_per_100 <= 2
    assert outcome.failed == 0


@pytest.mark.parametrize("style", ["bucket", "per-minute"])
def test_a_late_event_loop_keeps_to_the_servers_bucket(style: str) -> None:
    """With headers, the tokens of the server's bucket pile up while the loop is held up,
    and the requests waiting take them all when it is free again: they are not queued a
    slot apart (which made a per-minute limit lose a third of itself)."""
    outcome = simulate(RateLimit(100, 20, style), seconds=20, stalls=0.3, stall=0.01)
    assert outcome.share >= 0.85
    assert outcome.throttled_per_100 <= 2


@pytest.mark.parametrize("learned", [20, 50])
def test_a_pace_learned_too_low_finds_the_limit_again(learned: float) -> None:
    """A first burst of 429s measured while the client or the server lagged sets the pace
    far under the limit, and then no 429 comes to measure it again: after ``Pacer.PROBE``
    seconds without one the pace looks for the limit again (1% a second would have taken
    a minute to climb from half of it: 55% of the limit in these 20 s)."""
    outcome = simulate(RateLimit(100, 20, "none"), seconds=20, learned=learned)
    assert outcome.share >= 0.7
    assert outcome.throttled_per_100 <= 2


@settings(max_examples=10, deadline=None)
@given(
    rate=st.floats(min_value=5, max_value=300),
    burst=st.integers(min_value=5, max_value=100),
    style=st.sampled_from(["bucket", "per-minute"]),
    latency=st.sampled_from([0.002, 0.05]),
)
def test_bucket_headers_keep_429s_rare(rate: float, burst: int, style: str, latency: float) -> None:
    """With headers, 429s are the first burst's (the requests in flight when the bucket
    first ran dry) and then no more than 2 per 100 successes. (Buckets of a few
    requests round their counts too coarsely for that: they see a 429 every few requests.)"""
    seconds = max(5.0, 100 / rate)  # long enough for the first burst not to count
    outcome = simulate(RateLimit(rate, burst, style), seconds=seconds, workers=8, latency=latency)
    assert outcome.throttled <= 8 + 0.02 * outcome.ok
    attainable = min(rate * seconds + burst, 8 / latency * seconds)  # 8 at a time
    # (A bucket of a few requests 50 ms away is seen one round trip late: about 90% of it.)
    assert outcome.ok >= 0.85 * attainable


@pytest.mark.parametrize(
    ("status", "headers", "hint", "pause"),
    [
        (429, {}, 2.0, 2.0),
        (503, {}, 1.0, 1.0),
        (500, {}, 1.0, 0.0),
        (429, {}, None, 0.0),
        (429, {}, 3600.0, 0.0),
        (
            200,
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"},
            None,
            360.0,
        ),
        (
            200,
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "x"},
            None,
            0.0,
        ),
    ],
)
def test_pause_from_headers(
    status: int, headers: dict[str, str], hint: float | None, pause: float
) -> None:
    assert pause_from_headers(status, headers, hint) == pause


@pytest.mark.parametrize("noise", [0.01, 0.02, 0.03])
def test_stray_429s_do_not_slow_the_client_down(noise: float) -> None:
    """A server that answers a few 429s whatever the pace (in trouble, not limited): well
    below 5% of the answers, they are retried and the client keeps its speed."""
    seconds, workers, latency = 10.0, 32, 0.01
    outcome = simulate(
        RateLimit(10_000, 10_000, "none"),
        seconds=seconds,
        workers=workers,
        latency=latency,
        noise=noise,
    )
    unpaced = workers / latency * seconds * (1 - noise)
    assert outcome.ok >= 0.9 * unpaced
    assert outcome.throttled > 0  # the noise was there


def test_stray_429s_besides_a_limit_do_not_halve_the_pace() -> None:
    """A real limit, and 3% of the answers 429s whatever the pace: 429s no more frequent
    than those seen while paced do not slow the learned pace down (each of them did, and
    the pace settled near half of the limit)."""
    shares = [
        simulate(RateLimit(100, 20, "none"), seconds=30, noise=0.03, seed=seed).share
        for seed in range(5)
    ]
    assert statistics.median(shares) >= 0.55  # 0.45 when they did


def test_the_noise_is_read_from_paced_seconds_with_few_429s() -> None:
    control = Pacer(Pacing(requests_per_second=100, adaptive=True))
    assert control.noise() == 0  # nothing seen yet
    for second in range(8):
        for i in range(100):
            control.passed(second + i / 100)
        for _ in range(2 if second % 2 else 3):
            control._count(second + 0.995, throttled=True)
    control._count(8.0, throttled=False)  # the current second does not count yet
    assert control.noise() == pytest.approx(2 / 102)  # the lower third of 2% and 3%
    for _ in range(20):
        control._count(8.5, throttled=True)  # a second of the limit's 429s...
    control._count(9.0, throttled=False)
    assert control.noise() == pytest.approx(2 / 102)  # ...is not noise
