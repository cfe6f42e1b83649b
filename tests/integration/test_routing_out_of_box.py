"""The first hour of a new user: no outcomes wired back, the built-in default config.

The demo's sessions (planning, scoped edits, tests, debugging, look-ups, questions) go through a
real gateway and the simulated provider with the production router (``make_router``: the learned
policy behind the configured routes). With no feedback at all, the task-type prior decides: most
requests land on cheap and standard models, planning on a frontier one.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter

from _gateway_harness import running_stack
from rich.console import Console

from streams.analytics.demo import run_demo_async
from streams.config import load_settings
from streams.infra.runtime import make_router
from streams.providers.sim.config import SimConfig


def test_no_feedback_mix_is_mostly_cheap_and_standard() -> None:
    settings = load_settings(env={})
    sim = SimConfig(ttft_ms=0.0, tokens_per_s=0.0, models=SimConfig.from_settings(settings).models)
    with running_stack(settings, sim, router=make_router) as stack:
        result = asyncio.run(run_demo_async(stack.url, sessions=30, seed=11, feedback=False,
                                            console=Console(file=io.StringIO()), wait_stored_s=0.0))
    assert result["errors"] == 0 and result["feedback_sent"] == 0
    tier = {m.name: m.tier for m in settings.models}
    by_tier: Counter[str] = Counter()
    for model, n in result["models"].items():
        by_tier[tier[model]] += n
    total = sum(by_tier.values())
    assert total == result["requests"] > 60
    assert by_tier["frontier"] / total <= 0.30, by_tier
    assert (by_tier["cheap"] + by_tier["standard"]) / total >= 0.60, by_tier
