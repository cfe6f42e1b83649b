"""Multi-homing: load moves to the faster provider, and away from one that answers 429 or is broken."""

from __future__ import annotations

import random
from collections import Counter

from streams.reliability.balancer import Balancer
from streams.reliability.circuit import CircuitBreakers
from streams.reliability.settings import BalancerSettings, BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def firsts(b: Balancer, n: int = 1000) -> Counter[str]:
    return Counter(b.order("m", ["a", "b", "c"])[0] for _ in range(n))


def test_moves_toward_the_faster_provider() -> None:
    clock = Clock()
    b = Balancer(BalancerSettings(explore=0.05), clock=clock, rng=random.Random(0))
    for _ in range(5):
        b.record("m", "a", status=200, latency_s=0.30)
        b.record("m", "b", status=200, latency_s=0.05)
        b.record("m", "c", status=200, latency_s=0.20)
    counts = firsts(b)
    assert counts["b"] > 900  # the fastest gets nearly all first attempts
    assert counts["a"] + counts["c"] > 0  # a little exploration keeps the others measured


def test_latency_change_shifts_load() -> None:
    b = Balancer(BalancerSettings(explore=0.0, ewma_alpha=0.5), rng=random.Random(0))
    b.record("m", "a", status=200, latency_s=0.05)
    b.record("m", "b", status=200, latency_s=0.10)
    assert b.order("m", ["a", "b"]) == ["a", "b"]
    for _ in range(4):
        b.record("m", "a", status=200, latency_s=0.50)  # a slows down
    assert b.order("m", ["a", "b"]) == ["b", "a"]


def test_unmeasured_provider_is_tried_first() -> None:
    b = Balancer(BalancerSettings(explore=0.0))
    b.record("m", "a", status=200, latency_s=0.01)
    assert b.order("m", ["a", "b"]) == ["b", "a"]


def test_429_moves_load_away_until_retry_after_passes() -> None:
    clock = Clock()
    b = Balancer(BalancerSettings(explore=0.0), clock=clock)
    b.record("m", "a", status=200, latency_s=0.01)
    b.record("m", "b", status=200, latency_s=0.05)
    assert b.order("m", ["a", "b"])[0] == "a"
    b.record("m", "a", status=429, retry_after_s=10)
    assert b.order("m", ["a", "b"]) == ["b", "a"]  # throttled one last, but still a last resort
    clock.t = 9.9
    assert b.order("m", ["a", "b"])[0] == "b"
    clock.t = 10.1
    assert b.order("m", ["a", "b"])[0] == "a"


def test_429_without_retry_after_uses_default_cooldown() -> None:
    clock = Clock()
    b = Balancer(BalancerSettings(explore=0.0, cooldown_429_s=3), clock=clock)
    b.record("m", "a", status=429)
    assert b.order("m", ["a", "b"]) == ["b", "a"]
    clock.t = 3.1
    assert b.healthy("m", "a")
    assert b.order("m", ["a", "b"]) == ["a", "b"]  # neither measured: config order again


def test_open_breaker_moves_load_away() -> None:
    clock = Clock()
    breakers = CircuitBreakers(BreakerSettings(min_requests=2, open_s=30), clock)
    b = Balancer(BalancerSettings(explore=0.0), breakers, clock=clock)
    b.record("m", "a", status=200, latency_s=0.01)
    b.record("m", "b", status=200, latency_s=0.09)
    breakers.record("a", "m", False)
    breakers.record("a", "m", False)
    assert b.order("m", ["a", "b"]) == ["b", "a"]
    # Another model on the same provider is unaffected (breakers are per provider x model).
    assert b.healthy("other", "a")


def test_weighted_choice_follows_weights() -> None:
    b = Balancer(BalancerSettings(strategy="weighted"), weights={"a": 3, "b": 1, "c": 0}, rng=random.Random(7))
    counts = firsts(b, 4000)
    assert 2700 < counts["a"] < 3300
    assert 700 < counts["b"] < 1300
    assert counts["c"] < 10


def test_order_candidates_keeps_model_order() -> None:
    b = Balancer(BalancerSettings(explore=0.0))
    b.record("m1", "fast", status=200, latency_s=0.01)
    b.record("m1", "slow", status=200, latency_s=0.5)
    cands = [("m1", "slow"), ("m1", "fast"), ("m2", "x")]
    assert b.order_candidates(cands, key=lambda c: c) == [("m1", "fast"), ("m1", "slow"), ("m2", "x")]
