"""OpenAI Responses requests: the client's body -> canonical, canonical -> an upstream body.

Function call items are keyed by ``call_id`` (the canonical tool call id); the item ``id`` (``fc_…``) is
not needed to continue a conversation. Custom tools and their ``custom_tool_call(_output)`` items are
canonical function tools, calls and results (``streams.translation.custom_tools``) and rendered back as
custom ones. Reasoning items keep ``id`` and ``encrypted_content`` so a
same-dialect relay can send them back; reasoning from other providers is never sent to OpenAI.
"""

from __future__ import annotations

from typing import Any, Final

from streams.translation.canonical import (
    CanonicalRequest,
    Dialect,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    TextPart,
    Thinking,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
)
from streams.translation.common import (
    add_system_text,
    append_tool_result,
    data_url,
    drop,
    effort_from_budget,
    expect,
    extra_fields,
    int_field,
    new_request,
    number_field,
    optional_list,
    parse_metadata_and_user,
    parse_response_format,
    split_data_url,
    string_field,
    user_for_upstream,
)
from streams.translation.custom_tools import custom_names, custom_tool, unwrap_input, wrap_input

DIALECT: Final[Dialect] = "openai_responses"

_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
        "temperature", "top_p", "stream", "reasoning", "text", "metadata", "user",
    }
)  # fmt: skip


def _content_parts(content: Any, where: str, extra: dict[str, Any]) -> list[TextPart | ImagePart | DocumentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    expect(isinstance(content, list), f"{where} must be a string or a list", where)
    out: list[TextPart | ImagePart | DocumentPart] = []
    for i, p in enumerate(content):
        pw = f"{where}[{i}]"
        expect(isinstance(p, dict), f"{pw} must be an object", pw)
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text"):
            out.append(TextPart(string_field(p.get("text"), f"{pw}.text")))
        elif kind == "refusal":
            out.append(TextPart(p.get("refusal") or ""))
        elif kind == "input_image":
            url = p.get("image_url")
            if isinstance(url, str):
                media, data = split_data_url(url)
                out.append(ImagePart(data=data, media_type=media) if data is not None else ImagePart(url=url))
            else:
                drop(extra, f"input_image by file_id at {pw} dropped")
        elif kind == "input_file":
            media, data = split_data_url(p.get("file_data") or "")
            if data is not None:
                out.append(DocumentPart(data=data, media_type=media, title=p.get("filename")))
            elif isinstance(p.get("file_url"), str):
                out.append(DocumentPart(url=p["file_url"], title=p.get("filename")))
            else:
                drop(extra, f"input_file by file_id at {pw} dropped")
        else:
            drop(extra, f"content part type {kind!r} at {pw} dropped")
    return out


def _assistant(req: CanonicalRequest) -> Message:
    """The assistant message that consecutive output items (reasoning, text, calls) belong to."""
    last = req.messages[-1] if req.messages else None
    if last is not None and last.role == "assistant":
        return last
    msg = Message("assistant", [])
    req.messages.append(msg)
    return msg


def _flatten_tools(tools: list[Any], req: CanonicalRequest, extra: dict[str, Any], where: str) -> None:
    for i, t in enumerate(tools):
        tw = f"{where}[{i}]"
        expect(isinstance(t, dict), f"{tw} must be an object", tw)
        kind = t.get("type")
        if kind == "function":
            req.tools.append(
                Tool(
                    name=string_field(t.get("name"), f"{tw}.name"),
                    description=t.get("description") or "",
                    parameters=t.get("parameters") or {"type": "object", "properties": {}},
                )
            )
        elif kind == "custom":
            req.tools.append(_parse_custom_tool(t, tw))
        elif kind == "namespace":
            nested = t.get("tools")
            expect(isinstance(nested, list), f"{tw}.tools must be a list", f"{tw}.tools")
            before = len(req.tools)
            _flatten_tools(nested, req, extra, f"{tw}.tools")
            ns = t.get("name") or ""
            for tool in req.tools[before:]:
                tool.kind = f"namespace:{ns}"
            drop(extra, f"tool namespace {ns!r} flattened into {len(req.tools) - before} function tools")
        else:
            drop(extra, f"hosted tool {kind!r} is Responses-only and was dropped")
            extra.setdefault("hosted_tools", []).append(t)


def _parse_custom_tool(t: dict[str, Any], where: str) -> Tool:
    fmt = t.get("format")
    expect(fmt is None or isinstance(fmt, dict), f"{where}.format must be an object", f"{where}.format")
    syntax: str | None = None
    definition = ""
    if fmt is not None and fmt.get("type") == "grammar":
        syntax = string_field(fmt.get("syntax"), f"{where}.format.syntax")
        definition = string_field(fmt.get("definition"), f"{where}.format.definition")
    else:
        expect(
            fmt is None or fmt.get("type") == "text",
            f"{where}.format.type must be 'text' or 'grammar'",
            f"{where}.format.type",
        )
    description = t.get("description")
    return custom_tool(
        string_field(t.get("name"), f"{where}.name"),
        string_field(description, f"{where}.description") if description is not None else "",
        syntax,
        definition,
    )


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    req = new_request(body, DIALECT, _KNOWN)
    extra = req.extra
    items: Any = body.get("input")
    if items is None:
        expect(any(k in body for k in ("previous_response_id", "conversation", "prompt")), "input is required", "input")
        items = []
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    expect(isinstance(items, list), "input must be a string or a list", "input")
    instructions = body.get("instructions")
    if instructions is not None:
        req.system.append(TextPart(string_field(instructions, "instructions")))

    leading = True
    for i, it in enumerate(items):
        where = f"input[{i}]"
        expect(isinstance(it, dict), f"{where} must be an object", where)
        kind = it.get("type") or ("message" if "role" in it else None)
        if kind == "message":
            role = it.get("role")
            parts = _content_parts(it.get("content"), f"{where}.content", extra)
            if role in ("system", "developer"):
                texts = [p for p in parts if isinstance(p, TextPart)]
                add_system_text(req, texts, leading=leading)
                continue
            leading = False
            if role == "assistant":
                _assistant(req).parts.extend(parts)
            elif role == "user":
                req.messages.append(Message("user", list(parts)))
            else:
                raise TranslationError(f"{where}.role {role!r} is not supported", param=f"{where}.role")
            continue
        leading = False
        if kind == "function_call":
            args = it.get("arguments")
            _assistant(req).parts.append(
                ToolCallPart(
                    string_field(it.get("call_id"), f"{where}.call_id"),
                    string_field(it.get("name"), f"{where}.name"),
                    args if isinstance(args, str) else "",
                )
            )
        elif kind == "custom_tool_call":
            _assistant(req).parts.append(
                ToolCallPart(
                    string_field(it.get("call_id"), f"{where}.call_id"),
                    string_field(it.get("name"), f"{where}.name"),
                    wrap_input(string_field(it.get("input"), f"{where}.input")),
                )
            )
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = it.get("output")
            content = _content_parts(output if output is not None else "", f"{where}.output", extra)
            append_tool_result(req, ToolResultPart(string_field(it.get("call_id"), f"{where}.call_id"), content))
        elif kind == "reasoning":
            summary = "\n\n".join(_texts(it.get("summary")))
            if not summary:
                summary = "".join(_texts(it.get("content")))
            _assistant(req).parts.append(
                ThinkingPart(summary, signature=it.get("encrypted_content") or None, id=it.get("id"))
            )
        else:
            drop(extra, f"input item type {kind!r} at {where} has no equivalent and was dropped")

    tools = optional_list(body, "tools")
    if tools is not None:
        _flatten_tools(tools, req, extra, "tools")
    tc = body.get("tool_choice")
    par = body.get("parallel_tool_calls")
    if tc in ("auto", "none", "required"):
        req.tool_choice = ToolChoice(mode=tc, parallel=par is not False)
    elif isinstance(tc, dict) and tc.get("type") in ("function", "custom") and isinstance(tc.get("name"), str):
        req.tool_choice = ToolChoice(mode="tool", name=tc["name"], parallel=par is not False)
    elif tc is not None:
        extra["tool_choice"] = tc  # allowed_tools / hosted tool choices: same-dialect only
        req.tool_choice = ToolChoice(parallel=par is not False)
    elif par is not None:
        req.tool_choice = ToolChoice(parallel=par is not False)

    req.max_tokens = int_field(body.get("max_output_tokens"), "max_output_tokens")
    req.temperature = number_field(body.get("temperature"), "temperature")
    req.top_p = number_field(body.get("top_p"), "top_p")
    req.stream = bool(body.get("stream", False))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict):
        effort = reasoning.get("effort")
        if isinstance(effort, str):
            req.thinking = Thinking(enabled=effort != "none", effort=effort)
        rest = {k: v for k, v in reasoning.items() if k != "effort"}
        if rest:
            extra["reasoning"] = rest
    text = body.get("text")
    if isinstance(text, dict):
        req.response_format = parse_response_format(text.get("format"), "text.format")
        rest = {k: v for k, v in text.items() if k != "format"}
        if rest:
            extra["text"] = rest
    parse_metadata_and_user(body, req)
    return req


def _input_part(p: Part) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, ImagePart):
        url = p.url if p.data is None else data_url(p.media_type, p.data)
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if isinstance(p, DocumentPart):
        if p.data is not None and (p.media_type or "").startswith("text/"):
            return {"type": "input_text", "text": p.data}
        out: dict[str, Any] = {"type": "input_file"}
        if p.data is not None:
            out["file_data"] = data_url(p.media_type, p.data)
        else:
            out["file_url"] = p.url
        out["filename"] = p.title or "document.pdf"
        return out
    raise TypeError(type(p))


def _render_input(req: CanonicalRequest, keep_reasoning: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    custom = custom_names(req.tools)
    custom_ids = {p.id for m in req.messages for p in m.parts if isinstance(p, ToolCallPart) and p.name in custom}
    if req.system:
        out.append({"type": "message", "role": "developer", "content": [_input_part(p) for p in req.system]})
    for m in req.messages:
        if m.role in ("system", "user"):
            content = [_input_part(p) for p in m.parts if isinstance(p, TextPart | ImagePart | DocumentPart)]
            role = "developer" if m.role == "system" else "user"
            if content:
                out.append({"type": "message", "role": role, "content": content})
            for p in m.parts:
                if isinstance(p, ToolResultPart):
                    out.append(_render_result(p, custom_ids))
        elif m.role == "tool":
            out.extend(_render_result(p, custom_ids) for p in m.parts if isinstance(p, ToolResultPart))
        else:
            texts: list[dict[str, Any]] = []
            for p in m.parts:
                if isinstance(p, TextPart):
                    texts.append({"type": "output_text", "text": p.text, "annotations": []})
                    continue
                if texts:
                    out.append({"type": "message", "role": "assistant", "content": texts})
                    texts = []
                if isinstance(p, ToolCallPart) and p.name in custom:
                    out.append(
                        {
                            "type": "custom_tool_call",
                            "call_id": p.id,
                            "name": p.name,
                            "input": unwrap_input(p.arguments),
                        }
                    )
                elif isinstance(p, ToolCallPart):
                    out.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
                elif isinstance(p, ThinkingPart) and keep_reasoning and p.signature and p.id:
                    summary = [{"type": "summary_text", "text": p.text}] if p.text else []
                    out.append({"type": "reasoning", "id": p.id, "summary": summary, "encrypted_content": p.signature})
            if texts:
                out.append({"type": "message", "role": "assistant", "content": texts})
    return out


def _render_result(p: ToolResultPart, custom_ids: set[str]) -> dict[str, Any]:
    if len(p.content) == 1 and isinstance(p.content[0], TextPart):
        output: Any = p.content[0].text
    elif not p.content:
        output = ""
    else:
        output = [_input_part(c) for c in p.content]
    kind = "custom_tool_call_output" if p.tool_call_id in custom_ids else "function_call_output"
    return {"type": kind, "call_id": p.tool_call_id, "output": output}


def render_request(req: CanonicalRequest, upstream_model: str, *, supports_thinking: bool = True) -> dict[str, Any]:
    same = req.dialect == DIALECT
    body: dict[str, Any] = extra_fields(req, DIALECT)
    hosted = body.pop("hosted_tools", None)
    reasoning: dict[str, Any] = dict(body.pop("reasoning", None) or {})
    text: dict[str, Any] = dict(body.pop("text", None) or {})
    raw_choice = body.pop("tool_choice", None)
    body["model"] = upstream_model
    body["input"] = _render_input(req, keep_reasoning=same and supports_thinking)
    if not same:
        body["store"] = False  # a translated conversation is always sent in full
    tools = [_render_tool(t) for t in req.tools]
    if same and hosted:
        tools.extend(hosted)
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        if same and raw_choice is not None:
            body["tool_choice"] = raw_choice
        elif tc is not None:
            body["tool_choice"] = _render_choice(req, tc)
        if tc is not None and not tc.parallel:
            body["parallel_tool_calls"] = False
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stream:
        body["stream"] = True
    th = req.thinking
    if supports_thinking and th is not None and (th.enabled or (same and th.effort)):
        reasoning["effort"] = th.effort or effort_from_budget(th.budget_tokens)
        if not same:
            reasoning.setdefault("summary", "auto")
    if supports_thinking and reasoning:
        body["reasoning"] = reasoning
    rf = req.response_format
    if rf is not None:
        fmt: dict[str, Any] = {"type": rf.type}
        if rf.type == "json_schema":
            fmt.update(name=rf.name or "response", schema=rf.schema or {})
            if rf.strict is not None:
                fmt["strict"] = rf.strict
        text["format"] = fmt
    if text:
        body["text"] = text
    if req.metadata:
        body["metadata"] = req.metadata
    user = user_for_upstream(req, DIALECT)
    if user is not None:
        body["user"] = user
    # The Responses API has no stop sequences: req.stop is not sent.
    return body


def _render_tool(t: Tool) -> dict[str, Any]:
    if t.custom is None:
        return {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
    fmt: dict[str, Any] = {"type": "text"}
    if t.custom.syntax is not None:
        fmt = {"type": "grammar", "syntax": t.custom.syntax, "definition": t.custom.definition}
    return {"type": "custom", "name": t.name, "description": t.custom.description, "format": fmt}


def _render_choice(req: CanonicalRequest, tc: ToolChoice) -> Any:
    if tc.mode != "tool":
        return tc.mode
    return {"type": "custom" if tc.name in custom_names(req.tools) else "function", "name": tc.name}


def client_tools(req: CanonicalRequest) -> dict[str, Tool]:
    """The client's tools that a writer must return calls of as declared: custom ones (as
    ``custom_tool_call``) and those flattened out of a namespace (with their ``namespace``)."""
    return {t.name: t for t in req.tools if t.custom is not None or t.kind.startswith("namespace:")}


def _texts(items: Any) -> list[str]:
    """The ``text`` strings of a list of parts; anything else (wrong types from a client) is skipped."""
    if not isinstance(items, list):
        return []
    return [t for p in items if isinstance(p, dict) and isinstance(t := p.get("text"), str)]
