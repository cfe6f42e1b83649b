"""What the router decided for one request, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The policy (and route) of a decision for a model the client named: the same over HTTP and Kafka, so
# analytics and off-policy evaluation tell routed requests from named ones by one value.
PASSTHROUGH = "passthrough"
# The policy (and route) of a decision the caller forced with the ``x-router-model`` request header on a
# name the router decides for: not the policy's pick either, so off-policy evaluation leaves it out.
OVERRIDE = "override"
MODEL_OVERRIDE_HEADER = "x-router-model"


@dataclass(slots=True)
class Decision:
    decision_id: str
    session_id: str
    model: str
    provider: str
    policy: str
    policy_version: int
    reason: str
    confidence: float
    propensity: float
    features: dict[str, Any] = field(default_factory=dict)
    route: str = "default"
    prompt_version: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    cached: bool = False
    ts_ms: int = 0
    # Experiments (streams/routing/experiments.py): which arm served the session ("control" or
    # "canary"), the candidate's name, and in shadow mode what the candidate would have chosen.
    variant: str = "control"
    experiment: str = ""
    shadow_model: str | None = None
    shadow_policy: str | None = None
