"""Attempt decisions without I/O: retryable, delays, the deadline, the budget. No event loop."""

from __future__ import annotations

import email.utils
import math
import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiorunlist
from aiorunlist._attempts import Attempts, Retries, Retry, Timeouts, retry_delay, retry_hint
from aiorunlist._protocol import make_status_error


def _err(code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": "nope", "type": "x", "param": None, "code": code}})


def _status_error(
    status: int, headers: dict[str, str] | None = None, code: str | None = None
) -> aiorunlist.APIStatusError:
    return make_status_error(status, headers or {}, _err(code), thread_id="t")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (499, {}, False),
        (500, {}, True),
        (503, {}, True),
        (400, {}, False),
        (404, {}, False),
        (400, {"x-should-retry": "true"}, True),
        (503, {"x-should-retry": "false"}, False),
        (503, {"x-should-retry": "maybe"}, True),
    ],
)
def test_status_errors_say_whether_they_are_retryable(
    status: int, headers: dict[str, str], expected: bool
) -> None:
    assert _status_error(status, headers).retryable is expected


def test_quota_is_never_retried() -> None:
    err = _status_error(429, {"x-should-retry": "true"}, "insufficient_quota")
    assert isinstance(err, aiorunlist.QuotaExceededError)
    assert err.retryable is False
    # The same holds for one a user builds.
    assert aiorunlist.QuotaExceededError("x", status_code=429).retryable is False
    assert aiorunlist.RateLimitError("x", status_code=429).retryable is True


def test_every_error_has_one_notion_of_retryable() -> None:
    assert aiorunlist.PaginationError("x").retryable is False
    assert aiorunlist.APIConnectionError("x").retryable is True
    assert aiorunlist.APIConnectionError("x", retryable=False).retryable is False
    assert aiorunlist.APIResponseValidationError("x", retryable=False).retryable is False


def test_retry_delay_prefers_server_hints() -> None:
    rng = random.Random(1)
    assert retry_delay(0, {"retry-after-ms": "250", "retry-after": "9"}, rng=rng) == 0.25
    assert retry_delay(0, {"retry-after": "3"}, rng=rng) == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 5, usegmt=True)
    assert retry_delay(0, {"retry-after": date}, rng=rng, now=now) == pytest.approx(5.0)
    # Beyond the cap, or garbage: back off instead.
    assert retry_delay(0, {"retry-after": "3600"}, rng=rng) <= 0.5
    assert retry_delay(0, {"retry-after": "soon"}, rng=rng) <= 0.5


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 01 Jan 99999999999 00:00:00 GMT",  # a year no datetime holds
        "Mon, 99 Foo 2026 99:99:99 GMT",
        "nan",
        "inf",
        "-inf",
        "1e400",
    ],
)
def test_absurd_retry_after_is_no_hint(value: str) -> None:
    assert retry_hint({"retry-after": value}) is None
    assert 0 <= retry_delay(0, {"retry-after": value}, rng=random.Random(0)) <= 0.5
    err = _status_error(404, {"retry-after": value})  # parsed on any status: no crash
    assert isinstance(err, aiorunlist.NotFoundError)


@given(st.integers(0, 20), st.floats(0.01, 2.0), st.floats(0.5, 30.0))
def test_backoff_is_bounded_and_jittered(attempt: int, initial: float, cap: float) -> None:
    d = retry_delay(attempt, {}, initial_delay=initial, max_delay=cap, rng=random.Random(attempt))
    full = min(initial * 2**attempt, cap)
    assert 0.75 * full - 1e-9 <= d <= full + 1e-9


def _attempts(**retries: object) -> Attempts:
    page = retries.pop("page", None)
    return Attempts(
        Retries(**retries),  # type: ignore[arg-type]
        thread_id="t",
        now=100.0,
        page_timeout=page,  # type: ignore[arg-type]
        rng=random.Random(0),
    )


def test_not_retryable_is_raised_at_once() -> None:
    attempts = _attempts()
    assert attempts.after_failure(_status_error(404), {}, 100.0) is None


def test_retries_until_max_retries() -> None:
    attempts = _attempts(max_retries=2, initial_delay=1.0, max_delay=1.0)
    err = _status_error(500)
    for _ in range(2):
        decision = attempts.after_failure(err, {}, 100.0)
        assert isinstance(decision, Retry)
        assert 0.75 <= decision.delay <= 1.0
        assert not decision.connection_failure
        attempts.retried(5)
    assert attempts.after_failure(err, {}, 100.0) is None
    assert attempts.spent == 10
    assert err.not_retried is None  # max_retries needs no explanation


def test_connection_failures_are_priced_as_such() -> None:
    decision = _attempts().after_failure(aiorunlist.APIConnectionError("x"), {}, 100.0)
    assert isinstance(decision, Retry)
    assert decision.connection_failure


def test_a_retry_past_the_deadline_is_not_made_and_says_why() -> None:
    attempts = _attempts(page=2.0)  # deadline at 102
    err = _status_error(503, {"retry-after": "5"})
    assert attempts.after_failure(err, err.headers, 100.0) is None
    assert err.not_retried == "page_timeout=2.0s would pass"
    assert str(err).endswith("(not retried: page_timeout=2.0s would pass)")
    assert err.message.startswith("listing runs")  # the server's text stays as it was


def test_a_wait_past_the_deadline_raises_the_last_error_or_a_timeout() -> None:
    attempts = _attempts(page=2.0)
    attempts.check_wait(1.5, 100.0, None)  # fits
    with pytest.raises(aiorunlist.APITimeoutError, match=r"page_timeout=2\.0s passed"):
        attempts.check_wait(3.0, 100.0, None)
    err = _status_error(429)
    with pytest.raises(aiorunlist.RateLimitError) as info:
        attempts.check_wait(3.0, 100.0, err)
    assert info.value is err
    assert "waiting 3.0s" in str(err)


def test_time_left_and_extend() -> None:
    attempts = _attempts(page=2.0)
    assert attempts.time_left(101.0) == pytest.approx(1.0)
    attempts.extend(5.0)
    assert attempts.time_left(106.0) == pytest.approx(1.0)
    with pytest.raises(aiorunlist.APITimeoutError):
        attempts.time_left(107.5)
    assert _attempts().time_left(1e9) is None


def test_budget_spent_says_so() -> None:
    err = _attempts().budget_spent(_status_error(500))
    assert "retry budget is spent" in str(err)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"max_retries": True}, "max_retries must be an integer"),
        ({"max_retries": 1.5}, "max_retries must be an integer"),
        ({"initial_delay": math.nan}, "initial_delay must be a finite number"),
        ({"initial_delay": -1}, "initial_delay must be a finite number >= 0"),
        ({"max_delay": math.inf}, "max_delay must be a finite number"),
        ({"budget": -5}, "budget must be an integer >= 0"),
        ({"max_hint": 0}, "max_hint must be a finite number of seconds > 0"),
    ],
)
def test_bad_retry_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retries(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request": math.inf}, "request must be a finite number of seconds > 0"),
        ({"connect": 0}, "connect must be"),
        ({"read": -1.0}, "read must be"),
        ({"page": math.nan}, "page must be"),
        ({"page": True}, "page must be"),
    ],
)
def test_bad_timeouts(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Timeouts(**kwargs)  # type: ignore[arg-type]


def test_documented_defaults() -> None:
    assert Retries() == Retries(
        max_retries=2, initial_delay=0.5, max_delay=8.0, budget=500, max_hint=60.0
    )
    assert Timeouts() == Timeouts(request=60.0, connect=10.0, read=None, page=None)


def test_boundary_settings_are_accepted() -> None:
    # 0 is a valid count and a valid delay; None switches the budget off, and no limit.
    zero = Retries(max_retries=0, initial_delay=0, max_delay=0.0, budget=0)
    assert (zero.max_retries, zero.initial_delay, zero.max_delay, zero.budget) == (0, 0, 0.0, 0)
    assert Retries(budget=None).budget is None
    assert Timeouts(request=None, connect=None, read=None, page=None).page is None
    small = Timeouts(request=1, connect=0.5, read=0.001, page=1e-3)
    assert (small.request, small.connect, small.read, small.page) == (1, 0.5, 0.001, 1e-3)
    assert Retries(max_hint=0.5).max_hint == 0.5
    # ...but None is no count of retries, and a timeout must be > 0.
    with pytest.raises(ValueError, match=r"max_retries must be an integer >= 0, got None"):
        Retries(max_retries=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"initial_delay must be a finite number >= 0, got None"):
        Retries(initial_delay=None)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"page must be a finite number of seconds > 0 or None, got 0"
    ):
        Timeouts(page=0)


def test_hints_at_the_bounds_are_honoured() -> None:
    rng = random.Random(0)
    assert retry_delay(3, {"retry-after": "0"}, rng=rng) == 0.0
    assert retry_delay(3, {"retry-after": "60"}, rng=rng) == 60.0
    assert retry_delay(3, {"retry-after": "5"}, max_hint=5.0, rng=rng) == 5.0
    # Just past max_hint, or in the past: exponential backoff instead.
    assert 0.375 <= retry_delay(0, {"retry-after": "5.5"}, max_hint=5.0, rng=rng) <= 0.5
    assert 0.375 <= retry_delay(0, {"retry-after": "-1"}, rng=rng) <= 0.5
    assert 0.375 <= retry_delay(0, {"retry-after": "-0.5"}, rng=rng) <= 0.5
    # An unusable retry-after-ms falls back on retry-after.
    assert retry_delay(0, {"retry-after-ms": "nan", "retry-after": "2"}, rng=rng) == 2.0
    assert retry_delay(0, {"retry-after-ms": "x", "retry-after": "2"}, rng=rng) == 2.0


def test_backoff_exponent_is_capped() -> None:
    # The exponent stops at 64: huge attempt numbers neither overflow nor keep growing.
    expected = 1e-30 * 2.0**64 * (1 - 0.25 * random.Random(7).random())
    got = retry_delay(10_000, {}, initial_delay=1e-30, max_delay=1.0, rng=random.Random(7))
    assert got == pytest.approx(expected)


def test_deadline_boundaries() -> None:
    attempts = _attempts(page=2.0, initial_delay=1.0, max_delay=1.0)  # deadline at 102
    attempts.check_wait(2.0, 100.0, None)  # ends exactly at the deadline: allowed
    assert attempts.time_left(101.5) == pytest.approx(0.5)
    with pytest.raises(aiorunlist.APITimeoutError, match=r"after 1 attempt\(s\)"):
        attempts.time_left(102.0)  # nothing left is too late
    # A retry whose wait ends exactly at the deadline is made.
    err = _status_error(503, {"retry-after": "1"})
    decision = attempts.after_failure(err, err.headers, 101.0)
    assert decision == Retry(1.0, False)
    assert err.not_retried is None


@pytest.mark.parametrize("name", ["initial_delay", "max_delay", "max_hint"])
def test_retry_delays_are_never_none(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a finite number.*, got None"):
        Retries(**{name: None})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["request", "connect", "read", "page"])
def test_timeouts_are_positive_or_none(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a finite number of seconds > 0"):
        Timeouts(**{name: 0})
    assert getattr(Timeouts(**{name: None}), name) is None


def test_backoff_without_an_rng_uses_the_module_one() -> None:
    assert 0.375 <= retry_delay(0, {}) <= 0.5
