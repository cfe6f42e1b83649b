"""The facts a wire format hands the behaviour (``SimRequest``) and the reply it gets back (``Plan``).

Every wire module parses its request body into a ``SimRequest`` and renders a ``Plan`` in its own format;
``streams.providers.sim.behaviour`` turns one into the other, the same way for every dialect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

StopKind = Literal["end", "tool_use", "max_tokens"]
ToolChoice = str  # "auto" | "none" | "required" | "tool:<name>"


@dataclass(slots=True)
class ToolSpec:
    name: str
    schema: dict[str, Any]
    custom: bool = False  # an OpenAI custom tool: called with free text ``input``, not JSON arguments


@dataclass(slots=True)
class SimRequest:
    """The dialect-independent facts the behaviour needs."""

    dialect: str
    model: str
    stream: bool = False
    last_user_text: str = ""
    after_tool_result: bool = False
    tool_result_text: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_allowed: bool = True
    max_tokens: int | None = None
    thinking: bool = False
    # Structured output asked for (e.g. Gemini's responseMimeType application/json): the reply is a
    # JSON value of this schema ({} for any JSON).
    json_schema: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCall:
    id: str  # stable hex; each dialect adds its own prefix
    name: str
    arguments: str  # JSON text; a custom tool's raw input
    custom: bool = False


@dataclass(slots=True)
class Plan:
    thinking: list[str]
    text: list[str]  # output tokens, concatenated to form the text
    tool_calls: list[ToolCall]
    stop: StopKind
    output_tokens: int

    @property
    def text_str(self) -> str:
        return "".join(self.text)

    @property
    def thinking_str(self) -> str:
        return "".join(self.thinking)


def arg_tokens(arguments: str) -> int:
    return max(1, (len(arguments) + 3) // 4)


def json_format_schema(fmt: Any) -> dict[str, Any] | None:
    """The schema of a structured-output request as the OpenAI and Anthropic APIs spell it (Chat's
    ``response_format``, Responses' ``text.format``, Anthropic's ``output_config.format``): the schema
    of ``json_schema`` (nested or flat), ``{}`` (any JSON) for ``json_object``, else None."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {}
    if fmt.get("type") != "json_schema":
        return None
    nested = fmt.get("json_schema")
    schema = (nested if isinstance(nested, dict) else fmt).get("schema")
    return schema if isinstance(schema, dict) else {}


_JSON_INSTRUCTION = "Respond with a single JSON object"
_SCHEMA_LEAD = "JSON schema: "


def json_instruction_schema(text: str) -> dict[str, Any] | None:
    """A model told in its prompt to answer with one JSON object (and which schema) does so: the schema
    named after "JSON schema: ", ``{}`` when none is, None when the prompt does not ask."""
    if _JSON_INSTRUCTION not in text:
        return None
    _, lead, rest = text.partition(_SCHEMA_LEAD)
    if lead:
        try:
            schema, _ = json.JSONDecoder().raw_decode(rest)
        except ValueError:
            return {}
        return schema if isinstance(schema, dict) else {}
    return {}
