"""Circuit breaker transitions, driven by a fake clock."""

from __future__ import annotations

from streams.reliability.circuit import CircuitBreaker, CircuitBreakers, is_failure
from streams.reliability.settings import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def breaker(clock: Clock, **kw: object) -> CircuitBreaker:
    base: dict[str, object] = {"window_s": 10, "buckets": 10, "min_requests": 4, "error_rate": 0.5, "open_s": 5,
                               "latency_spike_factor": None}
    base.update(kw)
    return CircuitBreaker("p/m", BreakerSettings(**base), clock)  # type: ignore[arg-type]


def test_error_rate_over_window_opens() -> None:
    clock = Clock()
    b = breaker(clock)
    for ok in (True, True, False):
        b.record(ok, 0.1)
    assert b.state == "closed"  # 3 calls < min_requests: no verdict yet
    b.record(False, None)
    assert b.state == "open"  # 2/4 failed = 50%
    assert not b.allow()
    assert "error rate 2/4" in b.snapshot()["reason"]


def test_old_errors_slide_out_of_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record(False)
    clock.t += 11  # the failures are older than the window now
    for _ in range(3):
        b.record(True, 0.1)
    b.record(False)
    assert b.state == "closed"  # 1/4 in the window


def test_half_open_allows_limited_probes_then_success_closes() -> None:
    clock = Clock()
    b = breaker(clock, half_open_probes=1, close_after=2)
    for _ in range(4):
        b.record(False)
    assert b.state == "open"
    clock.t += 4.9
    assert not b.allow()
    clock.t += 0.2
    assert b.state == "half_open"
    assert b.allow()          # the one probe
    assert not b.allow()      # a second caller is held back while the probe is out
    assert not b.available()
    b.record(True, 0.1)
    assert b.state == "half_open"  # one success of the two needed
    assert b.allow()
    b.record(True, 0.1)
    assert b.state == "closed"
    assert all(b.allow() for _ in range(10))
    # The failures that opened it are forgotten: one new failure does not re-open it.
    b.record(False)
    assert b.state == "closed"


def test_failed_probe_reopens_with_longer_cooldown() -> None:
    clock = Clock()
    b = breaker(clock, open_s=5, max_open_s=12)
    for _ in range(4):
        b.record(False)
    clock.t += 5
    assert b.allow()
    b.record(False)
    assert b.state == "open"
    clock.t += 9
    assert b.state == "open"  # cool-down doubled to 10 s
    clock.t += 1
    assert b.state == "half_open"
    assert b.allow()
    b.record(False)
    clock.t += 11.9
    assert b.state == "open"  # capped at max_open_s = 12
    clock.t += 0.2
    assert b.state == "half_open"


def test_lost_probe_frees_its_slot_after_probe_timeout() -> None:
    clock = Clock()
    b = breaker(clock, probe_timeout_s=3)
    for _ in range(4):
        b.record(False)
    clock.t += 5
    assert b.allow()
    assert not b.allow()
    clock.t += 3.1  # the probe's request was cancelled and never reported
    assert b.allow()


def test_latency_spike_opens() -> None:
    clock = Clock()
    b = breaker(clock, latency_spike_factor=3.0, latency_min_samples=10, min_requests=5, window_s=10)
    for _ in range(30):
        b.record(True, 0.1)
        clock.t += 0.5
    assert b.state == "closed"
    assert b.snapshot()["baseline_latency_ms"] == 100.0
    clock.t += 20  # fresh window
    for _ in range(4):
        b.record(True, 2.0)
    assert b.state == "closed"  # 4 < min_requests
    b.record(True, 2.0)
    assert b.state == "open"
    assert "latency spike" in b.snapshot()["reason"]


def test_slow_call_rate_opens() -> None:
    clock = Clock()
    b = breaker(clock, slow_call_s=1.0, slow_call_rate=0.75)
    for lat in (0.2, 1.5, 1.5, 1.5):
        b.record(True, lat)
    assert b.state == "open"


def test_steady_latency_does_not_open() -> None:
    clock = Clock()
    b = breaker(clock, latency_spike_factor=3.0, latency_min_samples=5)
    for i in range(200):
        b.record(True, 0.1 + (i % 5) * 0.02)
        clock.t += 0.1
    assert b.state == "closed"


def test_disabled_breaker_always_allows() -> None:
    clock = Clock()
    b = breaker(clock, enabled=False)
    for _ in range(50):
        b.record(False)
    assert b.allow() and b.state == "closed"


def test_registry_is_per_provider_and_model_and_reports_health() -> None:
    clock = Clock()
    reg = CircuitBreakers(BreakerSettings(min_requests=2, error_rate=0.5, open_s=5), clock)
    for _ in range(2):
        reg.record("openai", "gpt", False)
    assert reg.state("openai", "gpt") == "open"
    assert reg.state("openai", "other") == "closed"
    assert reg.state("azure", "gpt") == "closed"
    assert not reg.allow("openai", "gpt") and reg.allow("azure", "gpt")
    assert reg.health() == {"breaker:openai/gpt": "down"}
    clock.t += 5
    assert reg.health() == {"breaker:openai/gpt": "degraded"}
    states = {s["name"]: s["state"] for s in reg.snapshot()}
    assert states["openai/gpt"] == "half_open"


def test_is_failure_rule() -> None:
    assert is_failure(None) and is_failure(500) and is_failure(503)
    assert not is_failure(200) and not is_failure(400) and not is_failure(429)
