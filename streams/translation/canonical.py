"""The one canonical request/response model every dialect converts to and from.

Dialect modules (``openai_chat``, ``openai_responses``, ``anthropic_messages``) translate their wire
JSON to these typed values and back with pure functions. Routing reads only these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Dialect = Literal["openai_chat", "openai_responses", "anthropic_messages", "gemini"]
Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filter", "error"]


@dataclass(slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """An image by URL or base64 data (``media_type`` set when ``data`` is)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    type: Literal["image"] = "image"


@dataclass(slots=True)
class DocumentPart:
    """A document (PDF or plain text) by URL or base64 data."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    title: str | None = None
    type: Literal["document"] = "document"


@dataclass(slots=True)
class ThinkingPart:
    """Model reasoning. ``signature`` is provider-opaque (Anthropic) and only valid for that provider.

    A redacted block keeps its opaque data in ``signature`` (``text`` is empty). ``id`` is the OpenAI
    Responses reasoning item id, needed to send that item back (``signature`` then holds its
    ``encrypted_content``). ``origin`` is the model that made the signature when the gateway knows it
    (a sealed value, ``common.seal_signature``); a signature goes back only to that model.
    """

    text: str
    signature: str | None = None
    redacted: bool = False
    id: str | None = None
    origin: str | None = None
    type: Literal["thinking"] = "thinking"


@dataclass(slots=True)
class ToolCallPart:
    """An assistant's call of a tool; ``arguments`` is the raw JSON string as the model produced it."""

    id: str
    name: str
    arguments: str
    type: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class ToolResultPart:
    """The result of a tool call, sent back by the client; ``tool_call_id`` matches ``ToolCallPart.id``."""

    tool_call_id: str
    content: list[TextPart | ImagePart | DocumentPart]
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


Part = TextPart | ImagePart | DocumentPart | ThinkingPart | ToolCallPart | ToolResultPart


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclass(slots=True)
class CustomTool:
    """An OpenAI custom (freeform) tool as the client declared it: its own description and input
    format, free text (``syntax`` None) or text in a grammar (``syntax`` ``lark``/``regex``)."""

    description: str = ""
    syntax: str | None = None
    definition: str = ""


@dataclass(slots=True)
class Tool:
    """A function tool. ``kind`` keeps the source type for tools a dialect has and others do not.

    A custom tool (``custom`` set) is held in its function form, one string argument ``input``
    (``streams.translation.custom_tools``), which is what dialects without custom tools are sent.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    kind: str = "function"
    custom: CustomTool | None = None


@dataclass(slots=True)
class ToolChoice:
    """``auto`` | ``none`` | ``required`` (any tool) | ``tool`` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool = True


@dataclass(slots=True)
class ResponseFormat:
    """``text`` | ``json_object`` | ``json_schema`` (with ``schema`` and ``name``)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class Thinking:
    """Reasoning requested by the client: token budget (Anthropic) or effort (OpenAI)."""

    enabled: bool = False
    budget_tokens: int | None = None
    effort: str | None = None


@dataclass(slots=True)
class CanonicalRequest:
    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    thinking: Thinking | None = None
    response_format: ResponseFormat | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    # The prompt cache this conversation reads: the client's ``prompt_cache_key``, else one derived from
    # the session (``common.session_cache_key``); OpenAI targets get it as their ``prompt_cache_key``.
    cache_key: str | None = None
    dialect: Dialect = "openai_chat"
    # Dialect-specific fields with no canonical slot; a same-dialect relay keeps them.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class CanonicalResponse:
    id: str
    model: str
    parts: list[Part]
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)


# Streaming: every dialect's stream parser emits these, every dialect's stream writer consumes them.


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    kind: Literal["start"] = "start"
    # The prompt's usage when the provider reports it at the start (Anthropic, Gemini), else None.
    usage: Usage | None = None


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class ThinkingDelta:
    """Reasoning text and/or its opaque signature; ``redacted`` blocks carry their data in ``signature``."""

    index: int
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    id: str | None = None  # an OpenAI reasoning item's id, which goes back with its encrypted_content
    kind: Literal["thinking"] = "thinking"


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str
    kind: Literal["tool_call_start"] = "tool_call_start"


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str
    kind: Literal["tool_call_delta"] = "tool_call_delta"


@dataclass(slots=True)
class PartEnd:
    index: int
    kind: Literal["part_end"] = "part_end"


@dataclass(slots=True)
class StreamEnd:
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None
    kind: Literal["end"] = "end"


@dataclass(slots=True)
class StreamError:
    """An error after the stream started (upstream broke mid-stream)."""

    message: str
    status: int = 500
    error_type: str = "api_error"
    kind: Literal["error"] = "error"


StreamEvent = (
    StreamStart | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | PartEnd | StreamEnd | StreamError
)


class TranslationError(ValueError):
    """A request that cannot be parsed or translated; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
