"""What the router decided for one request, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
