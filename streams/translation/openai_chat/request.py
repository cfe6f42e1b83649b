"""OpenAI Chat Completions requests: the client's body -> canonical, canonical -> an upstream body."""

from __future__ import annotations

from typing import Any, Final

import msgspec

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
    required_list,
    split_data_url,
    string_field,
    user_for_upstream,
)

DIALECT: Final[Dialect] = "openai_chat"

_KNOWN = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
        "max_completion_tokens", "temperature", "top_p", "stop", "stream", "reasoning_effort",
        "response_format", "metadata", "user",
    }
)  # fmt: skip


def text_parts(content: Any, param: str) -> list[TextPart]:
    """The text parts of a string or a list of parts (other part types are skipped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    expect(isinstance(content, list), f"{param} must be a string or a list", param)
    out = []
    for i, p in enumerate(content):
        expect(isinstance(p, dict), f"{param}[{i}] must be an object", f"{param}[{i}]")
        if p.get("type") in ("text", "input_text", "output_text"):
            out.append(TextPart(string_field(p.get("text"), f"{param}[{i}].text")))
    return out


def _user_parts(content: Any, param: str, extra: dict[str, Any]) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    expect(isinstance(content, list), f"{param} must be a string or a list", param)
    parts: list[Part] = []
    for i, p in enumerate(content):
        where = f"{param}[{i}]"
        expect(isinstance(p, dict), f"{where} must be an object", where)
        kind = p.get("type")
        if kind == "text":
            parts.append(TextPart(string_field(p.get("text"), f"{where}.text")))
        elif kind == "image_url":
            img = p.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            url = string_field(url, f"{where}.image_url.url")
            media_type, data = split_data_url(url)
            parts.append(ImagePart(data=data, media_type=media_type) if data is not None else ImagePart(url=url))
        elif kind == "file":
            f = p.get("file") or {}
            expect(isinstance(f, dict), f"{where}.file must be an object", f"{where}.file")
            media_type, data = split_data_url(f.get("file_data") or "")
            if data is not None:
                parts.append(DocumentPart(data=data, media_type=media_type, title=f.get("filename")))
            else:
                drop(extra, f"file part {where} without inline data dropped")
        else:
            drop(extra, f"content part type {kind!r} at {where} dropped")
    return parts


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    req = new_request(body, DIALECT, _KNOWN)
    extra = req.extra
    msgs = required_list(body, "messages")

    leading = True
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        expect(isinstance(m, dict), f"{where} must be an object", where)
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            texts = text_parts(content, f"{where}.content")
            add_system_text(req, texts, leading=leading)
            continue
        leading = False
        if role == "user":
            req.messages.append(Message("user", _user_parts(content, f"{where}.content", extra)))
        elif role == "assistant":
            parts: list[Part] = []
            reasoning = m.get("reasoning_content") or m.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                parts.append(ThinkingPart(reasoning))
            parts.extend(text_parts(content, f"{where}.content"))
            calls = m.get("tool_calls") or []
            expect(isinstance(calls, list), f"{where}.tool_calls must be a list", f"{where}.tool_calls")
            for j, tc in enumerate(calls):
                tw = f"{where}.tool_calls[{j}]"
                expect(isinstance(tc, dict), f"{tw} must be an object", tw)
                fn = tc.get("function")
                expect(isinstance(fn, dict), f"{tw}.function must be an object", f"{tw}.function")
                args = fn.get("arguments")
                if not isinstance(args, str):
                    args = msgspec.json.encode(args if args is not None else {}).decode()
                parts.append(
                    ToolCallPart(
                        string_field(tc.get("id"), f"{tw}.id"),
                        string_field(fn.get("name"), f"{tw}.function.name"),
                        args,
                    )
                )
            req.messages.append(Message("assistant", parts))
        elif role == "tool":
            call_id = string_field(m.get("tool_call_id"), f"{where}.tool_call_id")
            append_tool_result(req, ToolResultPart(call_id, list(text_parts(content, f"{where}.content"))))
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported", param=f"{where}.role")

    tools = optional_list(body, "tools")
    if tools is not None:
        for i, t in enumerate(tools):
            expect(isinstance(t, dict), f"tools[{i}] must be an object", f"tools[{i}]")
            if t.get("type") == "custom":
                # Chat streams have no custom tool call chunk to return such a call in.
                raise TranslationError(
                    f"tools[{i}]: custom (freeform) tools are not supported on /v1/chat/completions here; "
                    "use the Responses API (/v1/responses) or declare a function tool",
                    param=f"tools[{i}].type",
                )
            if t.get("type", "function") != "function":
                drop(extra, f"tool type {t.get('type')!r} (tools[{i}]) has no equivalent and was dropped")
                continue
            fn = t.get("function")
            expect(isinstance(fn, dict), f"tools[{i}].function must be an object", f"tools[{i}].function")
            req.tools.append(
                Tool(
                    name=string_field(fn.get("name"), f"tools[{i}].function.name"),
                    description=fn.get("description") or "",
                    parameters=fn.get("parameters") or {"type": "object", "properties": {}},
                )
            )
    req.tool_choice = _parse_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))

    req.max_tokens = int_field(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens")
    req.temperature = number_field(body.get("temperature"), "temperature")
    req.top_p = number_field(body.get("top_p"), "top_p")
    stop = body.get("stop")
    if isinstance(stop, str):
        req.stop = [stop]
    elif isinstance(stop, list):
        req.stop = [s for s in stop if isinstance(s, str)]
    elif stop is not None:
        raise TranslationError("stop must be a string or a list of strings", param="stop")
    req.stream = bool(body.get("stream", False))
    effort = body.get("reasoning_effort")
    if isinstance(effort, str):
        req.thinking = Thinking(enabled=effort != "none", effort=effort)
    req.response_format = parse_response_format(body.get("response_format"), "response_format")
    parse_metadata_and_user(body, req)
    return req


def _parse_tool_choice(tc: Any, parallel: Any) -> ToolChoice | None:
    par = parallel is not False
    if tc is None:
        return None if parallel is None else ToolChoice(parallel=par)
    if tc in ("auto", "none", "required"):
        return ToolChoice(mode=tc, parallel=par)
    if isinstance(tc, dict):
        fn = tc.get("function")
        name = (fn.get("name") if isinstance(fn, dict) else None) or tc.get("name")
        if isinstance(name, str):
            return ToolChoice(mode="tool", name=name, parallel=par)
    raise TranslationError("tool_choice is not valid", param="tool_choice")


def _render_tool_result(part: ToolResultPart) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``tool`` message, plus user content parts for images/documents (tool messages carry text only)."""
    texts = [p.text for p in part.content if isinstance(p, TextPart)]
    media = [_render_user_part(p) for p in part.content if not isinstance(p, TextPart)]
    content: Any = texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
    if not texts:
        content = "(see attached content)" if media else ""
    if part.is_error and isinstance(content, str):
        content = content if content.startswith("Error") else f"Error: {content}"
    return {"role": "tool", "tool_call_id": part.tool_call_id, "content": content}, media


def _render_user_part(p: Part) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ImagePart):
        url = p.url if p.data is None else data_url(p.media_type, p.data)
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(p, DocumentPart):
        if p.data is not None and (p.media_type or "").startswith("text/"):
            return {"type": "text", "text": _maybe_b64_text(p)}
        file: dict[str, Any] = {"file_data": data_url(p.media_type, p.data or "")}
        if p.title:
            file["filename"] = p.title
        if p.data is None:
            return {"type": "text", "text": f"[document: {p.url}]"}
        return {"type": "file", "file": file}
    raise TypeError(type(p))


def _maybe_b64_text(p: DocumentPart) -> str:
    # Plain-text documents carry raw text in ``data`` (Anthropic's convention), not base64.
    return p.data or ""


def render_messages(req: CanonicalRequest, *, keep_reasoning: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": p.text} for p in req.system]
    for m in req.messages:
        if m.role == "system":
            out.extend({"role": "system", "content": p.text} for p in m.parts if isinstance(p, TextPart))
        elif m.role == "user":
            parts = [
                _render_user_part(p) for p in m.parts if not isinstance(p, ToolResultPart | ThinkingPart | ToolCallPart)
            ]
            results = [p for p in m.parts if isinstance(p, ToolResultPart)]
            if results:  # a user turn that also carries tool results (not canonical, but be lenient)
                _append_results(out, results)
            if parts:
                if len(parts) == 1 and parts[0]["type"] == "text":
                    out.append({"role": "user", "content": parts[0]["text"]})
                else:
                    out.append({"role": "user", "content": parts})
        elif m.role == "tool":
            _append_results(out, [p for p in m.parts if isinstance(p, ToolResultPart)])
        else:
            msg: dict[str, Any] = {"role": "assistant"}
            texts = [p.text for p in m.parts if isinstance(p, TextPart)]
            msg["content"] = "".join(texts) if texts else None
            calls = [tool_call(p) for p in m.parts if isinstance(p, ToolCallPart)]
            if calls:
                msg["tool_calls"] = calls
            if keep_reasoning:
                reasoning = "".join(p.text for p in m.parts if isinstance(p, ThinkingPart) and p.signature is None)
                if reasoning:
                    msg["reasoning_content"] = reasoning
            out.append(msg)
    return out


def tool_call(p: ToolCallPart) -> dict[str, Any]:
    """An assistant message's ``tool_calls`` entry (requests and responses alike)."""
    return {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}


def _append_results(out: list[dict[str, Any]], results: list[ToolResultPart]) -> None:
    media: list[dict[str, Any]] = []
    for r in results:
        msg, extra_media = _render_tool_result(r)
        out.append(msg)
        media.extend(extra_media)
    if media:
        out.append({"role": "user", "content": media})


def render_tool_choice(tc: ToolChoice | None) -> Any:
    if tc is None:
        return None
    if tc.mode == "tool":
        return {"type": "function", "function": {"name": tc.name}}
    return tc.mode


def render_request(req: CanonicalRequest, upstream_model: str, *, supports_thinking: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = extra_fields(req, DIALECT)
    body["model"] = upstream_model
    body["messages"] = render_messages(req, keep_reasoning=req.dialect == DIALECT and supports_thinking)
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in req.tools
        ]
        if req.tool_choice is not None:
            body["tool_choice"] = render_tool_choice(req.tool_choice)
            if not req.tool_choice.parallel:
                body["parallel_tool_calls"] = False
    if req.max_tokens is not None:
        body["max_completion_tokens" if supports_thinking else "max_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = req.stop[:4]
    if req.stream:
        body["stream"] = True
        opts = dict(body.get("stream_options") or {})
        opts["include_usage"] = True
        body["stream_options"] = opts
    else:
        body.pop("stream_options", None)
    if supports_thinking and req.thinking is not None:
        if req.thinking.enabled:
            body["reasoning_effort"] = req.thinking.effort or effort_from_budget(req.thinking.budget_tokens)
        elif req.dialect == DIALECT and req.thinking.effort:
            body["reasoning_effort"] = req.thinking.effort
    rf = req.response_format
    if rf is not None and rf.type != "text":
        if rf.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
    elif rf is not None and req.dialect == DIALECT:
        body["response_format"] = {"type": "text"}
    if req.metadata and req.dialect == DIALECT:  # OpenAI rejects metadata unless store is on
        body["metadata"] = req.metadata
    user = user_for_upstream(req, DIALECT)
    if user is not None:
        body["user"] = user
    return body
