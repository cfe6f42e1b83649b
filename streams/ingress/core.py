"""The serving core: one dialect's way through admission, the upstream exchange and the trace.

Both entry points drive it: the HTTP endpoints (``streams.ingress.pipeline``) relay what it gets as
bytes or a stream, the Kafka router agent (``streams.agents.route_agent``) takes the whole answer
(``serve_whole``). The dialect's few differences are hooks here (``OpenAIChatCore`` and the others
override them); the phases are ``admission``, ``exchange``, ``relay`` and ``trace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter
from typing import Any, ClassVar

from streams.config import ModelSettings
from streams.ingress.admission import acquire_slot
from streams.ingress.context import client_key
from streams.ingress.errors import error_body
from streams.ingress.exchange import Answer, Exchange, Refusal, call_upstream, read_whole, upstream_refusal
from streams.ingress.gateway import Gateway
from streams.ingress.http import Scope, Send
from streams.ingress.trace import Trace, build_trace, cost
from streams.translation import registry
from streams.translation.codec import DialectCodec


class ServingCore:
    dialect: ClassVar[str]

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.codec: DialectCodec = registry.get(self.dialect)

    # Dialect hooks ----------------------------------------------------------------------------------

    def caller_key(self, scope: Scope, headers: Mapping[str, str]) -> str | None:
        """The HTTP caller's key (Gemini also takes ``x-goog-api-key`` and ``?key=``)."""
        return client_key(headers)

    def request_body(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        """The decoded HTTP body as the dialect's parser reads it: what the URL says goes in here
        (Gemini names the model and streaming in the path)."""
        return body

    async def with_history(self, ex: Exchange, body: dict[str, Any]) -> dict[str, Any] | Refusal:
        """The body with what it refers to put in, before parsing (Responses: the conversation a
        ``previous_response_id`` names), or why it cannot be served."""
        return body

    def watch_reply(self, ex: Exchange, send: Send) -> Send:
        """``send`` as the dialect needs to see its reply go out (Responses keeps it for the next turn)."""
        return send

    def client_wants_usage(self, body: dict[str, Any]) -> bool:
        """Did the client ask for usage in its stream? (Only OpenAI Chat makes it optional.)"""
        return True

    def render_options(self, ex: Exchange) -> dict[str, Any]:
        """Extra keyword arguments of this dialect's ``render_response`` / ``StreamWriter``."""
        return {}

    def stream_options(self, ex: Exchange) -> dict[str, Any]:
        """Extra keyword arguments of this dialect's ``StreamWriter``: the render options, plus what only
        a stream states before the answer (Anthropic's message_start)."""
        return self.render_options(ex)

    def stream_writer(self, ex: Exchange) -> Any:
        model = ex.model.name if ex.model else ex.decision.model if ex.decision else ""
        return self.codec.StreamWriter(model, include_usage=self.client_wants_usage(ex.body), **self.stream_options(ex))

    def rewrite_headers(self, headers: dict[str, str], model: ModelSettings) -> None:
        """Adjust the caller's forwarded headers for the model served (same-dialect path)."""

    # Phases -----------------------------------------------------------------------------------------

    def exchange(self, t0: float, headers: dict[str, str], raw: bytes, **kwargs: Any) -> Exchange:
        return Exchange(t0, self.dialect, headers, raw, **kwargs)

    def error_body(self, refusal: Refusal) -> bytes:
        return error_body(self.dialect, refusal.status, refusal.message, param=refusal.param,
                          error_type=refusal.error_type, code=refusal.code)

    async def serve_whole(self, ex: Exchange) -> tuple[int, bytes]:
        """An admitted exchange answered as a whole (status, body in the caller's dialect): the same
        concurrency slot, failover loop and translation as an HTTP request that does not stream."""
        refusal = await acquire_slot(self, ex)
        if refusal is not None:
            return refusal.status, self.error_body(refusal)
        try:
            out = await self._whole(ex)
        finally:
            self.gw.reliability.concurrency.release()
        if isinstance(out, Refusal):
            return out.status, self.error_body(out)
        return ex.status, out

    async def _whole(self, ex: Exchange) -> bytes | Refusal:
        answer = await self.upstream(ex)
        return answer if isinstance(answer, Refusal) else await read_whole(self, ex, answer)

    async def upstream(self, ex: Exchange) -> Answer | Refusal:
        """The provider's answer to relay, or the refusal to render (a provider's error included)."""
        answer = await call_upstream(self, ex)
        if isinstance(answer, Refusal) or answer.status < 400:
            return answer
        return await upstream_refusal(self, ex, answer)

    def cost_usd(self, ex: Exchange) -> float:
        """What the exchange's usage so far costs at the served model's prices (the trace's ``cost_usd``)."""
        return cost(ex, self.gw.frontier)[0]

    def finish(self, ex: Exchange) -> Trace | None:
        """The exchange's trace, built once (``None`` the second time), kept among the recent requests,
        and its cost charged to the key."""
        if ex.recorded:
            return None
        ex.recorded = True
        trace = build_trace(ex, self.gw.frontier, (perf_counter() - ex.t0) * 1000.0)
        # Readable at once by GET /v1/requests/{id}: the trace is built before the answer's last bytes go.
        self.gw.recent.add(trace, ex.decision.reason if ex.decision is not None else "")
        if ex.limits is not None and ex.identity is not None:
            # Charge what the answer really cost (the admission took only the input estimate).
            self.gw.reliability.limits.record(
                ex.identity.key_id, ex.limits, tokens=trace.input_tokens + trace.output_tokens,
                cost_usd=trace.cost_usd, est_tokens=ex.est_tokens,
            )
        return trace

    def decision_context(self, ex: Exchange) -> dict[str, Any]:
        """What the decision event carries beside the decision (``records.decision_event``)."""
        return {"request_id": ex.request_id, "client_dialect": self.dialect,
                "requested_model": ex.requested, "source": ex.source}
