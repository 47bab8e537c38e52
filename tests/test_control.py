"""Retry budget, shared pause and pacing, without a loop (time is passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiorunlist import Pacing
from aiorunlist._control import Pacer, RetryBudget, pause_from_headers


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


def test_adaptive_is_off_until_the_first_throttle() -> None:
    control = Pacer(Pacing(adaptive=True))
    for i in range(40):
        assert go(control, i / 40) == 0.0  # 40 requests in one second: unpaced
    control.throttled(1.0)
    assert control.rate == pytest.approx(20.0)  # half of what was achieved
    control.throttled(1.1)  # the same burst: no second halving
    assert control.rate == pytest.approx(20.0)
    assert go(control, 1.0) > 0
    rate = control.rate
    control.succeeded(1.1, {})
    assert control.rate is not None
    assert rate is not None
    assert control.rate > rate  # speeds back up


def test_adaptive_follows_rate_limit_headers() -> None:
    control = Pacer(Pacing(adaptive=True))
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-reset-requests": "10s",
    }
    control.succeeded(0.0, headers)
    assert control.rate == pytest.approx(0.5)
    plenty = {**headers, "x-ratelimit-remaining-requests": "90"}
    control.succeeded(0.0, plenty)
    assert control.rate == pytest.approx(0.55)


def test_fixed_pacing_is_not_adapted() -> None:
    control = Pacer(Pacing(requests_per_second=5))
    control.throttled(0.0)
    assert control.rate == 5
    assert control.throttles == 1


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
