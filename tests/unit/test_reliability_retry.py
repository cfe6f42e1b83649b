"""Backoff schedule, Retry-After parsing (both formats), bounds on attempts and total time."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from streams.reliability.retry import (
    Backoff,
    RetryableError,
    RetryState,
    parse_retry_after,
    retry_after_from_headers,
    retry_call,
    retryable_status,
)
from streams.reliability.settings import RetrySettings

NOW = 1_700_000_000.0


def test_retry_after_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("0") == 0.0


def test_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 30, UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == pytest.approx(30.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0  # in the past


@pytest.mark.parametrize("bad", [None, "", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2015 99:99:99 GMT"])
def test_retry_after_garbage_is_ignored(bad: str | None) -> None:
    assert parse_retry_after(bad, now=NOW) is None


def test_retry_after_from_headers_prefers_ms() -> None:
    assert retry_after_from_headers({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_from_headers({"retry-after": "9"}) == 9.0
    assert retry_after_from_headers({}) is None


def test_full_jitter_is_bounded_and_grows() -> None:
    b = Backoff(RetrySettings(base_delay_s=0.5, max_delay_s=4.0, jitter="full"), random.Random(1))
    for retry, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)):
        delays = [b.backoff(retry) for _ in range(500)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap  # it does use the range
        assert len(set(delays)) > 400  # and it is jittered


def test_equal_jitter_has_a_floor() -> None:
    b = Backoff(RetrySettings(base_delay_s=1.0, max_delay_s=8.0, jitter="equal"), random.Random(2))
    delays = [b.backoff(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)


def test_retry_after_is_a_floor_with_small_jitter() -> None:
    b = Backoff(RetrySettings(max_retry_after_s=20), random.Random(3))
    delays = [b.delay(1, retry_after=5.0) for _ in range(200)]
    assert all(d is not None and 5.0 <= d <= 5.5 for d in delays)
    assert b.delay(1, retry_after=21.0) is None  # longer than we are willing to wait


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_state_stops_after_max_attempts() -> None:
    clock = Clock()
    st = RetryState(Backoff(RetrySettings(max_attempts=3, base_delay_s=0.1), random.Random(0)), clock)
    st.attempt()
    assert st.next_delay() is not None
    st.attempt()
    assert st.next_delay() is not None
    st.attempt()
    assert st.next_delay() is None


def test_state_respects_total_budget() -> None:
    clock = Clock()
    st = RetryState(Backoff(RetrySettings(max_attempts=10, total_budget_s=10, base_delay_s=4, jitter="none")), clock)
    st.attempt()
    clock.t = 8.0
    assert st.next_delay() == pytest.approx(2.0)  # backoff trimmed to what is left
    assert st.next_delay(retry_after=3.0) is None  # a Retry-After that does not fit: give up now
    clock.t = 10.0
    assert st.next_delay() is None


async def test_retry_call_retries_then_succeeds_and_sleeps_retry_after() -> None:
    slept: list[float] = []
    calls = 0

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryableError("429", retry_after=2.0)
        if calls == 2:
            raise RetryableError("503")
        return "ok"

    out = await retry_call(flaky, settings=RetrySettings(max_attempts=3, base_delay_s=0.5), sleep=fake_sleep,
                           rng=random.Random(0))
    assert out == "ok" and calls == 3
    assert 2.0 <= slept[0] <= 2.2
    assert 0 <= slept[1] <= 1.0


async def test_retry_call_gives_up_and_reraises() -> None:
    async def fake_sleep(d: float) -> None:
        pass

    async def down() -> str:
        raise RetryableError("down")

    with pytest.raises(RetryableError):
        await retry_call(down, settings=RetrySettings(max_attempts=2), sleep=fake_sleep)


def test_retryable_statuses() -> None:
    assert all(retryable_status(s) for s in (408, 409, 429, 500, 502, 503, 504, 529))
    assert not any(retryable_status(s) for s in (200, 400, 401, 403, 404, 413, 501))
