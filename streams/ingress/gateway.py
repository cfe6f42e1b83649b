"""The gateway's state: settings, router, upstream client, event sink, auth and health hooks.

One ``Gateway`` per process; the ASGI endpoints (``create_app``) only read from it. It holds no
per-request state beyond the bounded store of recent requests' traces (``recent``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from streams.config import ModelSettings, ProviderSettings, Settings
from streams.events.ids import new_id
from streams.ingress.auth import AuthHook, ClientIdentity, accept_any
from streams.ingress.context import client_key
from streams.ingress.errors import send_error
from streams.ingress.events import EventSink, NullEventSink
from streams.ingress.http import header_text
from streams.ingress.recent import RecentRequests
from streams.providers.client import UpstreamClient
from streams.providers.failover import Candidate, FailoverPolicy, candidates
from streams.reliability.keys import VirtualKey
from streams.reliability.policy import Reliability
from streams.routing.decision import MODEL_OVERRIDE_HEADER, PASSTHROUGH, Decision
from streams.translation.canonical import CanonicalRequest

log = logging.getLogger(__name__)

# Component name -> state ("ok", "degraded", "down", or a short message).
HealthProbe = Callable[[], Mapping[str, Any]]


class RouterLike(Protocol):
    """What the gateway needs from ``streams.routing.router.Router``."""

    def is_auto(self, model_name: str) -> bool: ...

    def decide(
        self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str,
        session_id: str | None = None,
    ) -> Decision: ...


class Gateway:
    def __init__(
        self,
        settings: Settings,
        router: RouterLike,
        client: UpstreamClient,
        events: EventSink | None = None,
        *,
        health: HealthProbe | None = None,
        auth: AuthHook | None = None,
        failover: FailoverPolicy | None = None,
        reliability: Reliability | None = None,
        recent: RecentRequests | None = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.client = client
        self.events: EventSink = events or NullEventSink()
        self.health_probe = health
        self.auth: AuthHook = auth or accept_any
        # Virtual keys, limits, concurrency cap, breakers, balancer, retries: see streams/reliability.
        self.reliability = reliability or Reliability.from_settings(settings)
        self.failover: FailoverPolicy = failover or self.reliability.policy  # type: ignore[assignment]
        self.max_body_bytes = settings.server.max_body_bytes
        self.read_timeout_s: float | None = settings.server.read_timeout_s or None
        # Name lookups on the hot path are dict hits, not scans of the settings lists.
        self.models: dict[str, ModelSettings] = {m.name: m for m in settings.models}
        self.providers: dict[str, ProviderSettings] = {p.name: p for p in settings.providers}
        frontier = settings.frontier_default()
        self.frontier: ModelSettings | None = self.models.get(frontier) if frontier else None
        self.started_at = time.time()
        # The traces of the requests this process answered lately, for GET /v1/requests/{id}.
        self.recent = RecentRequests() if recent is None else recent

    @classmethod
    def from_settings(
        cls, settings: Settings, *, sim_url: str | None = None, events: EventSink | None = None, **kwargs: Any
    ) -> Gateway:
        """The production wiring: the routing package's ``Router`` and a fresh pooled client."""
        from streams.routing.router import Router  # imported here: routing is built separately

        return cls(settings, Router(settings), UpstreamClient(sim_url), events, **kwargs)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    # --- callers ------------------------------------------------------------------------------------

    def identify(self, key: str | None, headers: Mapping[str, str], vkey: VirtualKey | None) -> ClientIdentity | None:
        """Who to attribute the request to: its virtual key when it has one, else the auth hook's answer."""
        if vkey is not None:
            return ClientIdentity(key_id=vkey.id, team=vkey.team, tags=vkey.tags)
        return self.auth(key, headers)

    async def admit_caller(self, key: str | None, headers: Mapping[str, str], route: str, dialect: str,
                           send: Any) -> tuple[ClientIdentity, VirtualKey | None] | None:
        """For the model endpoints: the caller's key checked for ``route`` and who it is (with its virtual
        key), or None once the 401/403 is sent in the caller's dialect. The model scope is checked later,
        once a body names the model."""
        check = self.reliability.authenticate(key, route=route)
        if not check.ok:
            await send_error(send, dialect, check.status, check.message, param=check.param,
                             error_type=check.error_type_for(dialect))
            return None
        identity = self.identify(key, headers, check.key)
        if identity is None:
            await send_error(send, dialect, 401, "invalid API key")
            return None
        return identity, check.key

    async def refuse_key(self, scope: Mapping[str, Any], headers: Mapping[str, str], dialect: str, send: Any) -> bool:
        """For the auxiliary endpoints (models, count_tokens, route): answer 401/403 and say True when the
        caller's virtual key is missing, unknown, revoked or not allowed this route."""
        check = self.reliability.authenticate(client_key(headers), route=scope["path"])
        if check.ok:
            return False
        await send_error(send, dialect, check.status, check.message, param=check.param,
                         error_type=check.error_type_for(dialect))
        return True

    async def refuse_model(self, key: str | None, model: str, dialect: str, send: Any,
                           requested: str | None = None) -> bool:
        """For count_tokens and route: answer 403 and say True when the caller's virtual key may not use
        ``model`` (the one asked for, or the one the router picked for ``requested``)."""
        check = self.reliability.authenticate(key)
        denied = self.reliability.authorize_served(check.key, model, requested) if check.ok else None
        if denied is None:
            return False
        await send_error(send, dialect, 403, denied.message, param=denied.param,
                         error_type=denied.error_type_for(dialect))
        return True

    def knows_model(self, name: str) -> bool:
        """A configured model or a name the router decides for."""
        if name in self.models:
            return True
        try:
            return self.router.is_auto(name)
        except Exception:
            return False

    def override_problem(self, headers: Mapping[str, str], requested: str) -> str | None:
        """Why the model a caller forces with ``x-router-model`` cannot be served (the 404's message), or
        None. The header counts only on a name the router decides for (a named model is served as named);
        there it must name a configured model (an auto name in it just routes as usual)."""
        forced = headers.get(MODEL_OVERRIDE_HEADER, "").strip()
        if not forced or forced in self.models or requested in self.models or not self.knows_model(requested):
            return None
        if self.knows_model(forced):
            return None
        return f"model '{forced}' (forced by the {MODEL_OVERRIDE_HEADER} header) not found"

    # --- decisions ----------------------------------------------------------------------------------

    def decide(
        self, req: CanonicalRequest, headers: Mapping[str, str], requested: str, session_id: str
    ) -> Decision | None:
        """The router's decision for an auto model, a passthrough for a configured one, else None."""
        # The session id reaches the x-router-session header: CR/LF from a prompt_cache_key must not.
        # Cleaned before the router sees it, so its session state, the header and feedback agree.
        session_id = header_text(session_id)
        try:
            auto = self.router.is_auto(requested)
        except Exception:
            log.exception("router.is_auto failed; treating %r as a model name", requested)
            auto = False
        if auto:
            try:
                decision = self.router.decide(req, headers, requested_model=requested, session_id=session_id)
            except Exception:
                # Safety first: a broken policy must not take the service down; use the frontier default.
                log.exception("router.decide failed; using the frontier default")
                if self.frontier is None:
                    raise
                return self.passthrough(self.frontier, session_id, policy="fallback", reason="router error")
            decision.session_id = header_text(decision.session_id) if decision.session_id else session_id
            return decision
        model = self.models.get(requested)
        if model is None:
            return None
        return self.passthrough(model, session_id)

    def passthrough(
        self, model: ModelSettings, session_id: str, *, policy: str = PASSTHROUGH, reason: str = "model named"
    ) -> Decision:
        return Decision(
            decision_id=new_id(),
            session_id=session_id,
            model=model.name,
            provider=model.providers[0],
            policy=policy,
            policy_version=0,
            reason=reason,
            confidence=1.0,
            propensity=1.0,
            route=PASSTHROUGH,
            ts_ms=int(time.time() * 1000),
        )

    def candidates(self, decision: Decision) -> list[Candidate]:
        model = self.models.get(decision.model)
        if model is None:
            return []
        return candidates(model, decision.provider, decision.fallbacks, self.models, self.providers)

    # --- events and health -----------------------------------------------------------------------------

    def emit(self, decision: Decision, trace: dict[str, Any], **context: Any) -> None:
        """Hand the decision and trace to the sink; a failing sink never fails a request."""
        try:
            self.events.emit_decision(decision, **context)
            self.events.emit_trace(trace)
        except Exception:
            log.exception("event sink failed; events dropped")

    def emit_decision_only(self, decision: Decision, **context: Any) -> None:
        """A decide-only answer (POST /v1/route): the decision, no trace."""
        try:
            self.events.emit_decision(decision, **context)
        except Exception:
            log.exception("event sink failed; decision dropped")

    def health(self) -> dict[str, Any]:
        # A component is a state word ("ok", "idle", "disabled", or a problem) or {"ok": bool, "detail": str}.
        components: dict[str, Any] = {"gateway": "ok", "upstream_client": "ok" if self.client.started else "idle"}
        if self.health_probe is not None:
            try:
                components.update(self.health_probe())
            except Exception as exc:
                components["probe"] = f"error: {type(exc).__name__}"
        # Breakers that are not closed ("breaker:<provider>/<model>": "down" open, "degraded" half-open).
        rel = self.reliability
        components.update(rel.health())
        status = "ok" if all(_healthy(v) for v in components.values()) else "degraded"
        return {
            "status": status,
            "components": components,
            "breakers": [b for b in rel.breakers.snapshot() if b["state"] != "closed"],
            "concurrency": rel.concurrency.snapshot(),
            "models": len(self.models),
            "providers": len(self.providers),
            "uptime_s": round(time.time() - self.started_at, 1),
        }


def _healthy(state: Any) -> bool:
    if isinstance(state, dict):
        return bool(state.get("ok"))
    return state in ("ok", "idle", "disabled")
