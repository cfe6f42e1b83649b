"""``DialectCodec``: what every dialect package offers, one typed record per dialect.

A dialect package (``openai_chat``, ``openai_responses``, ``anthropic_messages``) builds its
``CODEC`` from its own functions and classes; mypy checks each against the signatures below, so the
gateway, the router agent and the providers can call any dialect the same way
(``streams.translation.registry.get(dialect)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from streams.translation.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Dialect,
    StopReason,
    StreamEvent,
    Tool,
    Usage,
)
from streams.translation.scanner import UsageScanner


class ParseRequest(Protocol):
    """A client's request body -> the canonical request (``TranslationError`` on bad input)."""

    def __call__(self, body: dict[str, Any]) -> CanonicalRequest: ...


class RenderRequest(Protocol):
    """The canonical request -> this dialect's body for ``upstream_model``."""

    def __call__(
        self, req: CanonicalRequest, upstream_model: str, *, supports_thinking: bool = True
    ) -> dict[str, Any]: ...


class ParseResponse(Protocol):
    """An upstream's whole response body -> the canonical response."""

    def __call__(self, body: dict[str, Any]) -> CanonicalResponse: ...


class RenderResponse(Protocol):
    """The canonical response -> this dialect's body, named ``model`` for the client.

    ``keep_signatures``: the provider's signed reasoning reaches the client, sealed with the model that
    made it (``common.seal_signature``) so that only that model gets it back;
    ``client_tools``: the client's tools whose calls must come back as declared (OpenAI Responses:
    custom tools, tools flattened out of a namespace), by name. A dialect without
    either ignores it.
    """

    def __call__(
        self,
        resp: CanonicalResponse,
        *,
        model: str,
        keep_signatures: bool = ...,
        client_tools: dict[str, Tool] | None = None,
    ) -> dict[str, Any]: ...


class RenderError(Protocol):
    """An error body in this dialect; ``error_type`` overrides the type derived from ``status``; ``code``
    is a machine-readable reason where the dialect's error shape has one (OpenAI's ``code``)."""

    def __call__(
        self, status: int, message: str, *, error_type: str | None = None, param: str | None = None,
        code: str | None = None,
    ) -> dict[str, Any]: ...


class StreamReader(Protocol):
    """Upstream SSE events (``event`` name, ``data`` text) -> canonical stream events."""

    def feed(self, event: str | None, data: str) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """The upstream body ended: the remaining events (an error when the stream was cut)."""
        ...


class StreamWriter(Protocol):
    """Canonical stream events -> this dialect's SSE bytes for the client."""

    usage: Usage | None
    stop_reason: StopReason | None

    def write(self, ev: StreamEvent) -> bytes: ...


class NewStreamReader(Protocol):
    def __call__(self) -> StreamReader: ...


class NewStreamWriter(Protocol):
    def __call__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = False,
        client_tools: dict[str, Tool] | None = None,
    ) -> StreamWriter: ...


class BodyUsage(Protocol):
    """Usage of a whole response body (zeros when absent); None when the body is not JSON at all."""

    def __call__(self, data: bytes) -> Usage | None: ...


class RewriteRelayed(Protocol):
    """The same-dialect relay's edits to the client's top-level fields (raw JSON bytes each), in place:
    what the chosen model cannot take (``supports_thinking``), usage a stream must carry
    (``ensure_usage``). The model name is set by ``streams.translation.fastpath``."""

    def __call__(self, top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None: ...


class NewUsageScanner(Protocol):
    """A scanner for a same-dialect relayed stream; ``drop_usage_chunk`` cuts a usage chunk the
    client did not ask for (only OpenAI Chat has one)."""

    def __call__(self, *, drop_usage_chunk: bool = False) -> UsageScanner: ...


class SealRelayed(Protocol):
    def __call__(self, data: bytes) -> bytes: ...


def _unchanged(data: bytes) -> bytes:
    return data


@dataclass(frozen=True, slots=True)
class DialectCodec:
    """One dialect's translation to and from canonical, for requests, responses, streams and usage."""

    dialect: Dialect
    parse_request: ParseRequest
    render_request: RenderRequest
    parse_response: ParseResponse
    render_response: RenderResponse
    render_error: RenderError
    # Classes (called once per stream); named as the classes they hold.
    StreamParser: NewStreamReader
    StreamWriter: NewStreamWriter
    body_usage: BodyUsage
    usage_scanner: NewUsageScanner
    rewrite_relayed: RewriteRelayed
    # A whole same-dialect answer as the client gets it (Anthropic: its signatures sealed with their
    # model); the bytes unchanged for a dialect with nothing to seal.
    seal_relayed: SealRelayed = field(default=_unchanged)
