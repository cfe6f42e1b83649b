"""The reliability layer through the gateway's own failover loop (fake upstream client)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from streams.config import Settings
from streams.providers.client import UpstreamError
from streams.providers.failover import candidates, send_with_failover
from streams.reliability.policy import Reliability
from streams.reliability.settings import BalancerSettings, BreakerSettings, ReliabilitySettings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def settings() -> Settings:
    return Settings.model_validate({
        "providers": [
            {"name": "p1", "dialect": "openai_chat", "base_url": "sim"},
            {"name": "p2", "dialect": "openai_chat", "base_url": "sim"},
        ],
        "models": [{"name": "m", "provider": ["p1", "p2"]}],
    })


class FakeClient:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.calls: list[str] = []

    async def send(self, provider: Any, path: str, body: bytes, headers: Any, stream: bool) -> Any:
        self.calls.append(provider.name)
        outcome = self.plan[provider.name]
        if outcome == "down":
            raise UpstreamError("connection refused", provider=provider.name)

        async def read() -> bytes:
            return b"{}"

        return SimpleNamespace(status=outcome, headers={}, read=read)


async def test_open_breaker_is_skipped_and_balancer_routes_around_it(tmp_path: Any) -> None:
    s = settings()
    s.data_dir = str(tmp_path)
    clock = Clock()
    rel = Reliability(
        ReliabilitySettings(breaker=BreakerSettings(min_requests=2, open_s=30), balancer=BalancerSettings(explore=0)),
        clock=clock, rng=random.Random(0),
    )
    models = {m.name: m for m in s.models}
    providers = {p.name: p for p in s.providers}
    client = FakeClient({"p1": "down", "p2": 200})

    def prepare(model: Any, provider: Any) -> tuple[str, bytes, dict[str, str]]:
        return "/chat/completions", b"{}", {}

    for _ in range(2):
        cands = rel.order(candidates(models["m"], "p1", [], models, providers))
        res = await send_with_failover(client, cands, prepare, stream=False, policy=rel.policy)  # type: ignore[arg-type]
        assert res.response is not None and res.provider.name == "p2"
    assert rel.breakers.state("p1", "m") == "open"
    client.calls.clear()
    cands = rel.order(candidates(models["m"], "p1", [], models, providers))
    assert [c[1].name for c in cands] == ["p2", "p1"]
    res = await send_with_failover(client, cands, prepare, stream=False, policy=rel.policy)  # type: ignore[arg-type]
    assert client.calls == ["p2"]  # the broken provider is not even tried
    assert rel.health() == {"breaker:p1/m": "down"}


async def test_429_status_moves_load_without_opening_the_breaker() -> None:
    clock = Clock()
    rel = Reliability(ReliabilitySettings(breaker=BreakerSettings(min_requests=1), balancer=BalancerSettings(explore=0)),
                      clock=clock)
    s = settings()
    m, p1, p2 = s.models[0], s.providers[0], s.providers[1]
    rel.policy.record(m, p1, True, status=200, latency_s=0.01)
    rel.policy.record(m, p2, True, status=200, latency_s=0.02)
    rel.policy.record(m, p1, False, status=429, retry_after_s=5)
    assert rel.breakers.state("p1", "m") == "closed"
    assert [c[1].name for c in rel.order([(m, p1), (m, p2)])] == ["p2", "p1"]
    clock.t = 6
    assert [c[1].name for c in rel.order([(m, p1), (m, p2)])] == ["p1", "p2"]


def test_from_settings_builds_everything(tmp_path: Any) -> None:
    s = settings()
    s.data_dir = str(tmp_path)
    rel = Reliability.from_settings(s, env={})
    assert rel.keys is None  # no virtual keys configured, none required
    assert rel.concurrency.max_concurrency == s.server.max_concurrency
    assert rel.limits_for(None).unlimited
    assert rel.snapshot()["concurrency"]["active"] == 0


def test_authenticate_open_mode_and_required_mode(tmp_path: Any) -> None:
    s = settings()
    s.data_dir = str(tmp_path)
    assert Reliability.from_settings(s, env={}).authenticate("anything").ok  # no keys anywhere: open
    from streams.reliability.keys import KeyStore

    store = KeyStore.from_settings(s, env={})
    plain, key = store.create("ci", models=["m"])
    revoked, old = store.create("old")
    store.revoke(old.id)
    rel = Reliability.from_settings(s, env={})  # the store file now exists: keys are checked
    assert rel.keys is not None
    good = rel.authenticate(plain, model="m")
    assert good.ok and good.key is not None and good.key.id == key.id
    assert rel.authenticate(plain, model="other").status == 403  # a known key out of scope: refused
    assert rel.authenticate(revoked).status == 401  # a revoked key never works, even in open mode
    open_mode = rel.authenticate("some-upstream-style-key")
    assert open_mode.ok and open_mode.key is None  # unknown key: passes without identity
    strict = Reliability.from_settings(s, env={})
    strict.require_key = True
    assert strict.authenticate("some-upstream-style-key").status == 401
    assert strict.authenticate(None).status == 401
