"""The gateway's HTTP side and the one serving core every request goes through.

A request's phases, one module each: ``admission`` (parse, keys, limits, a concurrency slot),
``exchange`` (the upstream call with breakers, retries and the balancer), ``relay`` (streams back to
the caller), ``trace`` (the one typed ``Trace``). ``core.ServingCore`` ties them together for one
dialect (``openai_chat``, ``openai_responses``, ``anthropic_messages``, ``gemini``; all four in
``dialects.serving_cores``); ``gateway.Gateway`` holds what every core shares. ``pipeline`` is the
HTTP entry of a dialect's endpoint, ``validation`` the checks they share, ``route`` ``POST /v1/route``,
``feedback`` ``POST /v1/feedback``, ``models`` ``GET /v1/models``; ``app`` is the ASGI app (Starlette
routing over raw endpoints) and its uvicorn runner, ``connections`` its guarded HTTP protocol.
"""

from __future__ import annotations

from streams.ingress.admission import acquire_slot, admit, parse_request
from streams.ingress.app import connection_limits, create_app, listen_socket, serve, uvicorn_config
from streams.ingress.auth import ClientIdentity, accept_any, key_id
from streams.ingress.connections import ConnectionLimits, guarded_protocol
from streams.ingress.context import client_key
from streams.ingress.core import ServingCore
from streams.ingress.dialects import serving_cores
from streams.ingress.errors import BadRequest, error_body, load_json_object, send_error
from streams.ingress.events import EventSink, MemoryEventSink, NullEventSink
from streams.ingress.exchange import Exchange, Refusal, call_upstream, read_whole
from streams.ingress.gateway import Gateway
from streams.ingress.http import BodyTooLarge, read_body
from streams.ingress.trace import Trace, build_trace

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "ClientIdentity",
    "ConnectionLimits",
    "EventSink",
    "Exchange",
    "Gateway",
    "MemoryEventSink",
    "NullEventSink",
    "Refusal",
    "ServingCore",
    "Trace",
    "accept_any",
    "acquire_slot",
    "admit",
    "build_trace",
    "call_upstream",
    "client_key",
    "connection_limits",
    "create_app",
    "error_body",
    "guarded_protocol",
    "key_id",
    "listen_socket",
    "load_json_object",
    "parse_request",
    "read_body",
    "read_whole",
    "send_error",
    "serve",
    "serving_cores",
    "uvicorn_config",
]
