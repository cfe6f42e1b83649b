"""Anthropic Messages requests: the client's body -> canonical, canonical -> an upstream body.

Signed thinking blocks are only sent to the model that made them (``common.signature_fits``): an
unsealed one came from this dialect's provider, a sealed one names its maker; any other would be
rejected as an invalid signature.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from streams.translation.anthropic_messages.blocks import content_blocks, media_part, parse_tool_result, render_part
from streams.translation.canonical import (
    CanonicalRequest,
    Dialect,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    Thinking,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    TranslationError,
)
from streams.translation.common import (
    drop,
    expect,
    extra_fields,
    int_field,
    new_request,
    number_field,
    optional_list,
    required_list,
    signature_fits,
    signed_part,
    string_field,
    user_for_upstream,
)

DIALECT: Final[Dialect] = "anthropic_messages"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
_EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 32768}
_decode = msgspec.json.decode
_encode = msgspec.json.encode
_TOOL_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}

_KNOWN = frozenset(
    {
        "model", "messages", "system", "tools", "tool_choice", "max_tokens", "temperature", "top_p",
        "stop_sequences", "stream", "thinking", "metadata", "output_config",
    }
)  # fmt: skip


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    req = new_request(body, DIALECT, _KNOWN)
    extra = req.extra
    msgs = required_list(body, "messages")

    system = body.get("system")
    if system is not None:
        for b in content_blocks(system, "system"):
            if b["type"] == "text":
                req.system.append(TextPart(string_field(b.get("text"), "system.text")))

    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        expect(isinstance(m, dict), f"{where} must be an object", where)
        role = m.get("role")
        blocks = content_blocks(m.get("content"), f"{where}.content")
        if role == "system":  # Claude Code's mid-conversation system message
            req.messages.append(
                Message("system", [TextPart(b.get("text") or "") for b in blocks if b["type"] == "text"])
            )
            continue
        if role not in ("user", "assistant"):
            raise TranslationError(f"{where}.role {role!r} is not supported", param=f"{where}.role")
        results: list[Part] = []
        parts: list[Part] = []
        for j, b in enumerate(blocks):
            bw = f"{where}.content[{j}]"
            kind = b["type"]
            if kind == "text":
                parts.append(TextPart(string_field(b.get("text"), f"{bw}.text")))
            elif kind in ("image", "document"):
                parts.append(media_part(b, bw))
            elif kind == "tool_use":
                args = b.get("input", {})
                parts.append(
                    ToolCallPart(
                        string_field(b.get("id"), f"{bw}.id"),
                        string_field(b.get("name"), f"{bw}.name"),
                        _encode(args).decode(),
                    )
                )
            elif kind == "tool_result":
                results.append(parse_tool_result(b, bw, extra))
            elif kind == "thinking":
                parts.append(signed_part(b.get("thinking") or "", b.get("signature") or None))
            elif kind == "redacted_thinking":
                parts.append(signed_part("", string_field(b.get("data"), f"{bw}.data"), redacted=True))
            else:
                drop(extra, f"content block {kind!r} at {bw} has no equivalent and was dropped")
        # Canonical form: tool results live in their own ``tool`` message before the user's text.
        if results:
            req.messages.append(Message("tool", results))
        if parts or not results:
            req.messages.append(Message(role, parts))

    tools = optional_list(body, "tools")
    if tools is not None:
        for i, t in enumerate(tools):
            expect(isinstance(t, dict), f"tools[{i}] must be an object", f"tools[{i}]")
            kind = t.get("type")
            if kind not in (None, "custom"):
                drop(extra, f"server tool {t.get('name') or kind!r} ({kind}) is Anthropic-only and was dropped")
                extra.setdefault("server_tools", []).append(t)
                continue
            req.tools.append(
                Tool(
                    name=string_field(t.get("name"), f"tools[{i}].name"),
                    description=t.get("description") or "",
                    parameters=t.get("input_schema") or {"type": "object", "properties": {}},
                )
            )
    tc = body.get("tool_choice")
    if tc is not None:
        expect(isinstance(tc, dict), "tool_choice must be an object", "tool_choice")
        kind = tc.get("type")
        mode = _TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
        expect(mode is not None, "tool_choice.type is not valid", "tool_choice.type")
        name = tc.get("name")
        expect(name is None or isinstance(name, str), "tool_choice.name must be a string", "tool_choice.name")
        if mode is not None:  # checked above; narrows the type
            req.tool_choice = ToolChoice(mode=mode, name=name, parallel=not tc.get("disable_parallel_tool_use"))

    req.max_tokens = int_field(body.get("max_tokens"), "max_tokens")
    req.temperature = number_field(body.get("temperature"), "temperature")
    req.top_p = number_field(body.get("top_p"), "top_p")
    stops = body.get("stop_sequences")
    if stops is not None:
        expect(isinstance(stops, list), "stop_sequences must be a list", "stop_sequences")
        req.stop = [s for s in stops if isinstance(s, str)]
    req.stream = bool(body.get("stream", False))

    th = body.get("thinking")
    oc = body.get("output_config")
    effort = oc.get("effort") if isinstance(oc, dict) else None
    if isinstance(th, dict):
        kind = th.get("type")
        if kind == "enabled":
            budget = th.get("budget_tokens")
            expect(isinstance(budget, int), "thinking.budget_tokens must be an integer", "thinking.budget_tokens")
            req.thinking = Thinking(enabled=True, budget_tokens=budget, effort=effort)
        elif kind == "adaptive":
            req.thinking = Thinking(enabled=True, effort=effort)
            extra["thinking"] = th  # no canonical slot for "adaptive"; a same-dialect relay keeps it
        elif kind == "disabled":
            req.thinking = Thinking(enabled=False, effort=effort)
        else:
            raise TranslationError("thinking.type is not valid", param="thinking.type")
    elif effort is not None:
        req.thinking = Thinking(enabled=False, effort=effort)
    if isinstance(oc, dict):
        fmt = oc.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            req.response_format = ResponseFormat("json_schema", schema=fmt.get("schema"))
        rest = {k: v for k, v in oc.items() if k not in ("effort", "format")}
        if rest:
            extra["output_config"] = rest
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        req.user = meta["user_id"]
    return req


def _keeps(p: Part, keep_thinking: bool, same: bool, upstream_model: str) -> bool:
    """Signed thinking goes only to the model that made it (else Anthropic: "Invalid `signature`")."""
    return keep_thinking and isinstance(p, ThinkingPart) and signature_fits(p.origin, same, upstream_model)


def _render_messages(req: CanonicalRequest, keep_thinking: bool, upstream_model: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    same = req.dialect == DIALECT
    for m in req.messages:
        role = m.role
        if role == "system":
            texts = [{"type": "text", "text": p.text} for p in m.parts if isinstance(p, TextPart) and p.text]
            if same:
                out.append({"role": "system", "content": texts[0]["text"] if len(texts) == 1 else texts})
                continue
            role, blocks = "user", texts  # other dialects' mid-conversation instructions become user text
        else:
            rendered = (render_part(p, _keeps(p, keep_thinking, same, upstream_model)) for p in m.parts)
            blocks = [b for b in rendered if b is not None]
            role = "user" if role == "tool" else role
        if not blocks:
            continue
        prev = out[-1] if out else None
        if prev is not None and prev["role"] == role and role == "user" and isinstance(prev["content"], list):
            # tool results and the user's text of one turn share a message; results must come first
            merged = prev["content"] + blocks
            merged.sort(key=lambda b: b["type"] != "tool_result")
            prev["content"] = merged
        else:
            out.append({"role": role, "content": blocks})
    return out


def _needs_thinking_off(messages: list[dict[str, Any]]) -> bool:
    """With thinking on, the assistant turn that made the pending tool calls must start with a thinking
    block; a turn served by another model (or with dropped signatures) has none, so thinking is turned
    off for this request instead of failing it."""
    if not messages or messages[-1]["role"] != "user":
        return False
    last = messages[-1]["content"]
    if not isinstance(last, list) or not any(b.get("type") == "tool_result" for b in last):
        return False
    for m in reversed(messages):
        if m["role"] == "assistant":
            content = m["content"]
            first = content[0] if isinstance(content, list) and content else {}
            return first.get("type") not in ("thinking", "redacted_thinking")
    return False


def render_request(req: CanonicalRequest, upstream_model: str, *, supports_thinking: bool = True) -> dict[str, Any]:
    same = req.dialect == DIALECT
    body: dict[str, Any] = extra_fields(req, DIALECT)
    server_tools = body.pop("server_tools", None)
    adaptive = body.pop("thinking", None)
    extra_oc = body.pop("output_config", None)
    body["model"] = upstream_model
    max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
    body["max_tokens"] = max_tokens
    messages = _render_messages(req, supports_thinking, upstream_model)
    if req.system:
        body["system"] = [{"type": "text", "text": p.text} for p in req.system if p.text]
    body["messages"] = messages

    tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in req.tools]
    if same and server_tools:
        tools.extend(server_tools)
    forced = False
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        if tc is not None:
            choice: dict[str, Any] = {
                "type": {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}[tc.mode]
            }
            if tc.mode == "tool":
                choice["name"] = tc.name
            if not tc.parallel and tc.mode != "none":
                choice["disable_parallel_tool_use"] = True
            body["tool_choice"] = choice
            forced = tc.mode in ("required", "tool")

    th = req.thinking
    thinking_on = bool(supports_thinking and th is not None and th.enabled and not forced)
    if thinking_on and _needs_thinking_off(messages):
        thinking_on = False
    if thinking_on and th is not None:
        if same and adaptive is not None and th.budget_tokens is None:
            body["thinking"] = adaptive
        else:
            budget = th.budget_tokens or _EFFORT_BUDGET.get(th.effort or "medium", 8192)
            budget = min(budget, max_tokens - 1)
            if budget < MIN_THINKING_BUDGET:
                thinking_on = False
            else:
                body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif same and th is not None and not th.enabled and supports_thinking:
        body["thinking"] = {"type": "disabled"}

    oc: dict[str, Any] = dict(extra_oc or {})
    if same and supports_thinking and th is not None and th.effort:
        oc["effort"] = th.effort
    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and same:
        oc["format"] = {"type": "json_schema", "schema": rf.schema or {}}
    elif rf is not None and rf.type != "text":
        hint = "Respond with a single JSON object and nothing else."
        if rf.schema:
            hint += " It must match this JSON schema: " + _encode(rf.schema).decode()
        body.setdefault("system", []).append({"type": "text", "text": hint})
    if oc:
        body["output_config"] = oc

    cm = body.get("context_management")
    if isinstance(cm, dict) and not thinking_on:
        kept = without_thinking_edits(cm)
        if kept:
            body["context_management"] = kept
        else:
            body.pop("context_management")

    # with thinking on Anthropic only accepts temperature 1 and top_p >= 0.95
    if req.temperature is not None and (not thinking_on or req.temperature == 1.0):
        body["temperature"] = req.temperature
    if req.top_p is not None and (not thinking_on or req.top_p >= 0.95):
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.stream:
        body["stream"] = True
    user = user_for_upstream(req, DIALECT)
    if user is not None:
        body["metadata"] = {"user_id": user}
    add_cache_breakpoints(body)
    return body


_EPHEMERAL: Final = {"type": "ephemeral"}
_UNCACHEABLE = ("thinking", "redacted_thinking")


def add_cache_breakpoints(body: dict[str, Any]) -> None:
    """Anthropic caches only up to ``cache_control`` breakpoints, which a translated request (or one
    rebuilt from canonical) has none of: mark the end of the tools, of the system prompt and of the
    conversation so far, so each turn reads the previous turn's prefix (3 of the 4 allowed)."""
    if body.get("tools"):
        body["tools"][-1] = {**body["tools"][-1], "cache_control": _EPHEMERAL}
    if body.get("system"):
        body["system"][-1] = {**body["system"][-1], "cache_control": _EPHEMERAL}
    for m in reversed(body["messages"]):
        content = m["content"]
        if not isinstance(content, list):
            continue
        for i in range(len(content) - 1, -1, -1):
            if content[i].get("type") not in _UNCACHEABLE:  # thinking blocks cannot carry a breakpoint
                content[i] = {**content[i], "cache_control": _EPHEMERAL}
                return


def without_thinking_edits(cm: dict[str, Any]) -> dict[str, Any] | None:
    """``context_management`` without its clear_thinking edits, which Anthropic rejects when thinking
    is off; None when no edit is left."""
    edits = [e for e in cm.get("edits") or [] if not str(e.get("type", "")).startswith("clear_thinking")]
    return {**cm, "edits": edits} if edits else None
