"""Admission: from a decoded body to a decided request, or the refusal to answer instead.

``parse_request``: the dialect's parser builds the canonical request and the dialect's shared checks
run; ``admit``: the key's model scope, the rate limits and budgets, the decision (the router for an auto
model, a passthrough for a configured one), the scope again on the model served, and the identity's
model list. Both entry points call both: the HTTP endpoints after checking the
caller's key, the Kafka router agent for a ``RouteRequest`` (the broker is its trust boundary).
``acquire_slot`` takes the process's concurrency slot for the upstream exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.ingress.exchange import Exchange, Refusal
from streams.ingress.http import parse_off_loop
from streams.ingress.validation import request_problem
from streams.reliability.concurrency import Overloaded
from streams.reliability.keys import VirtualKey
from streams.routing.sessions import session_identity
from streams.translation.canonical import TranslationError

if TYPE_CHECKING:
    from streams.ingress.core import ServingCore

# A common rule of thumb for English and code: ~4 bytes of JSON per token.
BYTES_PER_TOKEN = 4


async def parse_request(core: ServingCore, ex: Exchange, body: dict[str, Any]) -> Refusal | None:
    """The core's ``with_history`` completes the body (a chained Responses turn), the dialect's parser
    builds ``ex.req`` (a big body in a worker thread, so that one request cannot stall the loop for the
    others), then the checks every endpoint of the dialect shares
    (``validation.request_problem``: messages, model name, ``max_tokens`` within the model's limits)."""
    full = await core.with_history(ex, body)
    if isinstance(full, Refusal):
        return ex.fail(full)
    ex.body = body = full
    try:
        req = ex.req = await parse_off_loop(core.codec.parse_request, body, len(ex.raw))
    except TranslationError as exc:
        return ex.fail(Refusal(exc.status, exc.message, param=exc.param))
    problem = request_problem(req, ex.dialect, core.gw.models, core.gw.providers)
    if problem is not None:
        return ex.fail(Refusal(problem.status, problem.message, param=problem.param))
    return None


def admit(core: ServingCore, ex: Exchange, *, vkey: VirtualKey | None = None, key: str | None = None,
          session_id: str | None = None) -> Refusal | None:
    """Fill ``ex`` (limits, decision) for its parsed request, or say why not. ``session_id``: the caller's
    own (a ``RouteRequest`` names it), else ``routing.sessions.session_identity`` of headers, body and key."""
    gw, dialect = core.gw, ex.dialect
    rel = gw.reliability
    req = ex.req
    assert req is not None, "parse_request first"
    requested = ex.requested = req.model
    if vkey is not None:
        denied = rel.authorize_model(vkey, requested)
        if denied is not None:
            return ex.fail(Refusal(403, denied.message, param=denied.param,
                                   error_type=denied.error_type_for(dialect)))
    limits = rel.limits_for(vkey)
    if not limits.unlimited and ex.identity is not None:
        est_tokens = len(ex.raw) // BYTES_PER_TOKEN
        check = rel.limits.check(ex.identity.key_id, limits, est_tokens)
        if not check.ok:
            return ex.fail(Refusal(check.status, check.message, error_type=check.error_type_for(dialect),
                                   headers=check.headers()))
        ex.limits, ex.est_tokens = limits, est_tokens
    missing = gw.override_problem(ex.headers, requested)
    if missing is not None:
        return ex.fail(Refusal(404, missing, param="model"))
    decision = gw.decide(req, ex.headers, requested, session_id or session_identity(ex.headers, req, key))
    if decision is None:
        return ex.fail(Refusal(404, f"model '{requested}' not found", param="model"))
    ex.decision = decision
    # The key's model scope holds for the model served (an auto name's pick), and for its fallbacks.
    denied = rel.authorize_served(vkey, decision.model, requested)
    if denied is not None:
        return ex.fail(Refusal(403, denied.message, param=denied.param,
                               error_type=denied.error_type_for(dialect)))
    if vkey is not None and vkey.models:
        decision.fallbacks = [m for m in decision.fallbacks if vkey.allows_model(m)]
    identity = ex.identity
    if identity is not None and identity.allowed_models is not None and decision.model not in identity.allowed_models:
        return ex.fail(Refusal(403, f"this key may not use model '{decision.model}'", param="model"))
    return None


async def acquire_slot(core: ServingCore, ex: Exchange) -> Refusal | None:
    """The concurrency slot (release it with ``gw.reliability.concurrency.release()``), or the fast 503
    (529 for Anthropic when configured) that beats a slow collapse beyond the cap and its queue."""
    try:
        await core.gw.reliability.concurrency.acquire()
    except Overloaded as exc:
        # 529 is Anthropic's "overloaded"; OpenAI clients know 503 for the same thing.
        status = 503 if exc.status == 529 and ex.dialect != "anthropic_messages" else exc.status
        return ex.fail(Refusal(status, exc.message, error_type=exc.error_type_for(ex.dialect), headers=exc.headers()))
    return None
