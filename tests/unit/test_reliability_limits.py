"""Rate limits and budgets: the refusals a client sees (status, type, message, Retry-After)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.reliability.limits import Limits, TokenBucket
from streams.reliability.settings import LimitSettings


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def wall_at(y: int, mo: int, d: int, h: int = 12) -> Clock:
    return Clock(datetime(y, mo, d, h, tzinfo=UTC).timestamp())


def test_token_bucket_refills() -> None:
    clock = Clock()
    b = TokenBucket(60, 60, clock)  # 1/s, capacity 60
    b.take(60)
    assert b.wait_for(1) == pytest.approx(1.0)
    clock.t = 0.5
    assert b.wait_for(1) == pytest.approx(0.5)
    clock.t = 1000
    assert b.remaining() == 60  # never above capacity


def test_requests_per_minute_refuses_with_429_and_retry_after() -> None:
    clock = Clock()
    lim = Limits(clock=clock, wall=wall_at(2026, 1, 10))
    cfg = LimitSettings(requests_per_min=2, burst_s=60)
    assert lim.check("k", cfg).ok
    assert lim.check("k", cfg).ok
    res = lim.check("k", cfg)
    assert not res.ok
    assert res.status == 429 and res.error_type == "rate_limit_error" and res.limit == "requests_per_min"
    assert "2 requests per minute" in res.message
    assert res.retry_after_s == pytest.approx(30.0)
    assert (b"retry-after", b"30") in res.headers()
    assert res.error_type_for("anthropic_messages") == "rate_limit_error"
    assert res.error_type_for("openai_chat") == "rate_limit_exceeded"
    clock.t = 30.0
    assert lim.check("k", cfg).ok
    # Keys are independent.
    assert lim.check("other", cfg).ok


def test_tokens_per_minute_charges_actual_usage_after_the_answer() -> None:
    clock = Clock()
    lim = Limits(clock=clock, wall=wall_at(2026, 1, 10))
    cfg = LimitSettings(tokens_per_min=1000)
    assert lim.check("k", cfg, est_tokens=100).ok
    lim.record("k", cfg, tokens=1500, est_tokens=100)  # the answer was long: bucket in debt
    res = lim.check("k", cfg, est_tokens=10)
    assert not res.ok and res.status == 429 and res.limit == "tokens_per_min"
    assert "1000 tokens per minute" in res.message
    assert res.retry_after_s is not None and 29 < res.retry_after_s < 32  # ~(500+10)/16.7 per s
    clock.t = 60
    assert lim.check("k", cfg, est_tokens=10).ok


def test_daily_budget_refuses_with_402_after_spend() -> None:
    wall = wall_at(2026, 3, 5, 18)
    lim = Limits(wall=wall)
    cfg = LimitSettings(usd_per_day=1.0)
    assert lim.check("k", cfg).ok
    lim.record("k", cfg, cost_usd=0.6)
    assert lim.check("k", cfg).ok  # 0.6 < 1.0
    lim.record("k", cfg, cost_usd=0.6)
    res = lim.check("k", cfg)
    assert not res.ok and res.status == 402 and res.error_type == "budget_exceeded" and res.limit == "usd_per_day"
    assert "daily budget of $1.00" in res.message and "00:00 UTC" in res.message
    assert res.retry_after_s == pytest.approx(6 * 3600)
    assert res.error_type_for("openai_chat") == "insufficient_quota"
    wall.t += 6 * 3600 + 1  # next UTC day
    assert lim.check("k", cfg).ok
    assert lim.spend("k")["usd_today"] == 0.0
    assert lim.spend("k")["usd_month"] == pytest.approx(1.2)


def test_monthly_budget_and_reset_on_the_first() -> None:
    wall = wall_at(2026, 1, 31, 12)
    lim = Limits(wall=wall)
    cfg = LimitSettings(usd_per_month=5.0)
    lim.record("k", cfg, cost_usd=5.0)
    res = lim.check("k", cfg)
    assert res.status == 402 and res.limit == "usd_per_month" and "monthly budget of $5.00" in res.message
    assert res.retry_after_s == pytest.approx(12 * 3600)
    wall.t += 12 * 3600 + 1
    assert lim.check("k", cfg).ok


def test_unlimited_is_a_no_op() -> None:
    lim = Limits()
    cfg = LimitSettings()
    for _ in range(1000):
        assert lim.check("k", cfg, est_tokens=10**6).ok
    lim.record("k", cfg, tokens=10**9, cost_usd=10**6)
    assert lim.spend("k") == {"usd_today": 0.0, "usd_month": 0.0}


def test_spend_survives_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    wall = wall_at(2026, 2, 1)
    cfg = LimitSettings(usd_per_day=1.0)
    a = Limits(wall=wall)
    a.record("k", cfg, cost_usd=1.5)
    a.save(tmp_path / "spend.json")
    b = Limits(wall=wall)
    b.load(tmp_path / "spend.json")
    assert b.check("k", cfg).status == 402
