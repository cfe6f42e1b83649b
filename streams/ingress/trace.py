"""The trace: one typed record per served request, built once from its ``Exchange``.

``Trace`` is the Avro schema ``streams/events/schemas/trace.avsc`` as a msgspec struct (a unit test
keeps the two field for field); the HTTP endpoints and the Kafka router agent both build it with
``build_trace``, so the two entry points cannot disagree on a field's meaning or spelling.
"""

from __future__ import annotations

import msgspec

from streams.config import ModelSettings
from streams.ingress.exchange import Exchange
from streams.routing.client_detection import detect_client
from streams.translation.canonical import Usage


class Trace(msgspec.Struct, kw_only=True):
    event_id: str
    ts_ms: int
    request_id: str
    session_id: str
    decision_id: str
    client_dialect: str
    provider_dialect: str
    model: str
    provider: str
    route: str = "default"
    policy: str = ""
    policy_version: int = 0
    prompt_version: str | None = None
    status: int
    error: str | None = None
    stream: bool = False
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    overhead_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    attempts: int = 1
    source: str = "http"
    task_type: str = ""
    client: str = ""
    key_id: str | None = None

    def to_event(self) -> dict[str, object]:
        """The event dict the sinks encode (field order as in the schema)."""
        return msgspec.structs.asdict(self)


def cost(ex: Exchange, frontier: ModelSettings | None) -> tuple[float, float]:
    """(cost at the served model's prices, cost at the frontier default's) of the exchange's usage."""
    u = ex.usage
    if u is None or ex.model is None:
        return 0.0, 0.0
    spent = ex.model.cost_usd(u.input_tokens, u.output_tokens, u.cached_input_tokens)
    baseline = frontier.cost_usd(u.input_tokens, u.output_tokens, u.cached_input_tokens) if frontier else spent
    return spent, baseline


def client_of(ex: Exchange) -> str:
    """The client as the router's features name it (``claude_code``, ``codex``, ``aider``, ``sdk``…)."""
    d = ex.decision
    if d is not None and d.features and d.features.get("client"):
        return str(d.features["client"])
    return detect_client(ex.headers, ex.req)[0]  # a named model: no features were extracted


def build_trace(ex: Exchange, frontier: ModelSettings | None, latency_ms: float) -> Trace:
    d = ex.decision
    u = ex.usage or Usage()
    spent, baseline = cost(ex, frontier)
    features = d.features if d is not None and d.features else {}
    task = features.get("task_type") or features.get("task") or ""
    return Trace(
        event_id=ex.event_id,
        ts_ms=ex.ts_ms,
        request_id=ex.request_id,
        session_id=d.session_id if d is not None else ex.session_id,
        decision_id=d.decision_id if d is not None else "",
        client_dialect=ex.dialect,
        provider_dialect=ex.provider.dialect if ex.provider else "",
        model=ex.model.name if ex.model else d.model if d is not None else "",
        provider=ex.provider.name if ex.provider else d.provider if d is not None else "",
        route=d.route if d is not None else "default",
        policy=d.policy if d is not None else "",
        policy_version=int(d.policy_version or 0) if d is not None else 0,
        prompt_version=d.prompt_version if d is not None else None,
        status=ex.status,
        error=ex.error,
        stream=bool(ex.req and ex.req.stream),
        latency_ms=latency_ms,
        ttft_ms=ex.ttft_s * 1000.0 if ex.ttft_s is not None else 0.0,
        overhead_ms=ex.overhead_ms,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cached_tokens=u.cached_input_tokens,
        cost_usd=spent,
        baseline_cost_usd=baseline,
        attempts=len(ex.attempts),  # upstream calls made: 0 for an answer that never left the gateway
        source=ex.source,
        task_type=str(task),
        client=client_of(ex),
        key_id=ex.identity.key_id if ex.identity else None,
    )
