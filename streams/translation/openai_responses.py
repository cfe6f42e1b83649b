"""OpenAI Responses <-> canonical.

Function call items are keyed by ``call_id`` (the canonical tool call id); the item ``id`` (``fc_…``) is
not needed to continue a conversation. Reasoning items keep ``id`` and ``encrypted_content`` so a
same-dialect relay can send them back; reasoning from other providers is never sent to OpenAI.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec

from streams.translation import sse
from streams.translation.canonical import (
    CanonicalRequest,
    CanonicalResponse,
    Dialect,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    PartEnd,
    StopReason,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    Thinking,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
    Usage,
)
from streams.translation.openai_chat import (
    data_url,
    drop,
    effort_from_budget,
    expect,
    extra_fields,
    new_id,
    openai_error_type,
    parse_response_format,
    required_model,
    split_data_url,
    user_for_upstream,
)
from streams.translation.openai_chat import render_error as render_error  # same error body as chat

DIALECT: Final[Dialect] = "openai_responses"
_decode = msgspec.json.decode

_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
        "temperature", "top_p", "stream", "reasoning", "text", "metadata", "user",
    }
)  # fmt: skip


def _str(value: Any, param: str) -> str:
    expect(isinstance(value, str), f"{param} must be a string", param)
    return value


# ---------------------------------------------------------------- request


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
            out.append(TextPart(_str(p.get("text"), f"{pw}.text")))
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
                    name=_str(t.get("name"), f"{tw}.name"),
                    description=t.get("description") or "",
                    parameters=t.get("parameters") or {"type": "object", "properties": {}},
                )
            )
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


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    expect(isinstance(body, dict), "request body must be a JSON object", "body")
    model = required_model(body)
    items: Any = body.get("input")
    if items is None:
        expect(any(k in body for k in ("previous_response_id", "conversation", "prompt")), "input is required", "input")
        items = []
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    expect(isinstance(items, list), "input must be a string or a list", "input")
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN}
    req = CanonicalRequest(model=model, messages=[], dialect=DIALECT, extra=extra)
    instructions = body.get("instructions")
    if instructions is not None:
        req.system.append(TextPart(_str(instructions, "instructions")))

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
                if leading:
                    req.system.extend(texts)
                else:
                    req.messages.append(Message("system", list(texts)))
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
                    _str(it.get("call_id"), f"{where}.call_id"),
                    _str(it.get("name"), f"{where}.name"),
                    args if isinstance(args, str) else "",
                )
            )
        elif kind == "function_call_output":
            output = it.get("output")
            content = _content_parts(output if output is not None else "", f"{where}.output", extra)
            result = ToolResultPart(_str(it.get("call_id"), f"{where}.call_id"), content)
            last = req.messages[-1] if req.messages else None
            if last is not None and last.role == "tool":
                last.parts.append(result)
            else:
                req.messages.append(Message("tool", [result]))
        elif kind == "reasoning":
            summary = "\n\n".join(_texts(it.get("summary")))
            if not summary:
                summary = "".join(_texts(it.get("content")))
            _assistant(req).parts.append(
                ThinkingPart(summary, signature=it.get("encrypted_content") or None, id=it.get("id"))
            )
        else:
            drop(extra, f"input item type {kind!r} at {where} has no equivalent and was dropped")

    tools = body.get("tools")
    if tools is not None:
        expect(isinstance(tools, list), "tools must be a list", "tools")
        _flatten_tools(tools, req, extra, "tools")
    tc = body.get("tool_choice")
    par = body.get("parallel_tool_calls")
    if tc in ("auto", "none", "required"):
        req.tool_choice = ToolChoice(mode=tc, parallel=par is not False)
    elif isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("name"), str):
        req.tool_choice = ToolChoice(mode="tool", name=tc["name"], parallel=par is not False)
    elif tc is not None:
        extra["tool_choice"] = tc  # allowed_tools / hosted tool choices: same-dialect only
        req.tool_choice = ToolChoice(parallel=par is not False)
    elif par is not None:
        req.tool_choice = ToolChoice(parallel=par is not False)

    mt = body.get("max_output_tokens")
    if mt is not None:
        expect(
            isinstance(mt, int) and not isinstance(mt, bool),
            "max_output_tokens must be an integer",
            "max_output_tokens",
        )
        req.max_tokens = mt
    for name in ("temperature", "top_p"):
        v = body.get(name)
        if v is not None:
            expect(isinstance(v, int | float) and not isinstance(v, bool), f"{name} must be a number", name)
            setattr(req, name, float(v))
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
    meta = body.get("metadata")
    if isinstance(meta, dict):
        req.metadata = {str(k): str(v) for k, v in meta.items()}
    if isinstance(body.get("user"), str):
        req.user = body["user"]
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
                    out.append(_render_result(p))
        elif m.role == "tool":
            out.extend(_render_result(p) for p in m.parts if isinstance(p, ToolResultPart))
        else:
            texts: list[dict[str, Any]] = []
            for p in m.parts:
                if isinstance(p, TextPart):
                    texts.append({"type": "output_text", "text": p.text, "annotations": []})
                    continue
                if texts:
                    out.append({"type": "message", "role": "assistant", "content": texts})
                    texts = []
                if isinstance(p, ToolCallPart):
                    out.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
                elif isinstance(p, ThinkingPart) and keep_reasoning and p.signature and p.id:
                    summary = [{"type": "summary_text", "text": p.text}] if p.text else []
                    out.append({"type": "reasoning", "id": p.id, "summary": summary, "encrypted_content": p.signature})
            if texts:
                out.append({"type": "message", "role": "assistant", "content": texts})
    return out


def _render_result(p: ToolResultPart) -> dict[str, Any]:
    if len(p.content) == 1 and isinstance(p.content[0], TextPart):
        output: Any = p.content[0].text
    elif not p.content:
        output = ""
    else:
        output = [_input_part(c) for c in p.content]
    return {"type": "function_call_output", "call_id": p.tool_call_id, "output": output}


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
    tools: list[dict[str, Any]] = [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
        for t in req.tools
    ]
    if same and hosted:
        tools.extend(hosted)
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        if same and raw_choice is not None:
            body["tool_choice"] = raw_choice
        elif tc is not None:
            body["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
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


# ---------------------------------------------------------------- response


def parse_usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    din = u.get("input_tokens_details") or {}
    dout = u.get("output_tokens_details") or {}
    return Usage(
        input_tokens=u.get("input_tokens") or 0,
        output_tokens=u.get("output_tokens") or 0,
        cached_input_tokens=din.get("cached_tokens") or 0,
        cache_creation_input_tokens=din.get("cache_write_tokens") or 0,
        reasoning_tokens=dout.get("reasoning_tokens") or 0,
    )


def render_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_input_tokens,
            "cache_write_tokens": u.cache_creation_input_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _stop_of(status: str | None, incomplete: Any, parts: list[Part]) -> StopReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "content_filter" if reason == "content_filter" else "max_tokens"
    if status == "failed":
        return "error"
    return "tool_use" if any(isinstance(p, ToolCallPart) for p in parts) else "end_turn"


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    expect(isinstance(body, dict), "response body must be a JSON object", "body")
    output: Any = body.get("output")
    expect(isinstance(output, list), "output must be a list", "output")
    parts: list[Part] = []
    for it in output:
        kind = it.get("type")
        if kind == "message":
            for c in it.get("content") or []:
                if c.get("type") == "output_text":
                    parts.append(TextPart(c.get("text") or ""))
                elif c.get("type") == "refusal":
                    parts.append(TextPart(c.get("refusal") or ""))
        elif kind == "function_call":
            parts.append(
                ToolCallPart(it.get("call_id") or new_id("call_"), it.get("name") or "", it.get("arguments") or "")
            )
        elif kind == "reasoning":
            summary = "\n\n".join(s.get("text") or "" for s in it.get("summary") or [])
            parts.append(ThinkingPart(summary, signature=it.get("encrypted_content") or None, id=it.get("id")))
    return CanonicalResponse(
        id=body.get("id") or new_id("resp_"),
        model=body.get("model") or "",
        parts=parts,
        stop_reason=_stop_of(body.get("status"), body.get("incomplete_details"), parts),
        usage=parse_usage(body.get("usage")),
    )


def _response_object(
    rid: str, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None, created: int
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "metadata": {},
        "text": {"format": {"type": "text"}},
        "usage": render_usage(usage) if usage is not None else None,
    }


def _status_for(stop: StopReason) -> tuple[str, dict[str, Any] | None]:
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def render_response(
    resp: CanonicalResponse, *, model: str, keep_signatures: bool = False, tool_namespaces: dict[str, str] | None = None
) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    for p in resp.parts:
        if isinstance(p, TextPart):
            output.append(_message_item(new_id("msg_"), p.text, "completed"))
        elif isinstance(p, ToolCallPart):
            output.append(_call_item(new_id("fc_"), p.id, p.name, p.arguments, "completed", tool_namespaces))
        elif isinstance(p, ThinkingPart) and keep_signatures and p.signature:
            output.append(_reasoning_item(p.id or new_id("rs_"), p.text, p.signature))
    rid = resp.id if resp.id.startswith("resp_") else new_id("resp_")
    status, incomplete = _status_for(resp.stop_reason)
    obj = _response_object(rid, model, status, output, resp.usage, int(time.time()))
    obj["incomplete_details"] = incomplete
    return obj


def _message_item(iid: str, text: str, status: str) -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {"type": "message", "id": iid, "status": status, "role": "assistant", "content": content}


def _call_item(
    iid: str, call_id: str, name: str, args: str, status: str, namespaces: dict[str, str] | None
) -> dict[str, Any]:
    item = {"type": "function_call", "id": iid, "call_id": call_id, "name": name, "arguments": args, "status": status}
    if namespaces and name in namespaces:
        item["namespace"] = namespaces[name]
    return item


def _reasoning_item(iid: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": iid,
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    return item


def tool_namespaces(req: CanonicalRequest) -> dict[str, str]:
    """Tool name -> Responses namespace, for a writer that must return calls of flattened tools."""
    return {t.name: t.kind[10:] for t in req.tools if t.kind.startswith("namespace:")}


# ---------------------------------------------------------------- streaming


class StreamParser:
    """Responses events -> canonical events. Each message content part, function call and reasoning
    item becomes one canonical part, numbered in order of appearance."""

    __slots__ = ("_ended", "_next", "_parts", "_args", "_summary", "_saw_tool")

    def __init__(self) -> None:
        self._ended = False
        self._next = 0
        self._parts: dict[tuple[int, int], int] = {}  # (output_index, content_index or -1) -> canonical
        self._args: dict[int, int] = {}  # canonical index of a call -> argument chars relayed
        self._summary: dict[int, int] = {}  # canonical index of reasoning -> last summary_index
        self._saw_tool = False

    def _idx(self, key: tuple[int, int]) -> int:
        idx = self._parts.get(key)
        if idx is None:
            idx = self._parts[key] = self._next
            self._next += 1
        return idx

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        try:
            ev = _decode(data)
        except msgspec.DecodeError:
            return []
        if not isinstance(ev, dict):
            return []
        kind = ev.get("type") or event
        oi = ev.get("output_index", 0)
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            return [TextDelta(self._idx((oi, ev.get("content_index", 0))), ev.get("delta") or "")]
        if kind == "response.function_call_arguments.delta":
            idx = self._idx((oi, -1))
            delta = ev.get("delta") or ""
            self._args[idx] = self._args.get(idx, 0) + len(delta)
            return [ToolCallDelta(idx, delta)] if delta else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            idx = self._idx((oi, -1))
            out: list[StreamEvent] = []
            si = ev.get("summary_index", 0)
            prev = self._summary.get(idx)
            if prev is not None and si != prev:
                out.append(ThinkingDelta(idx, "\n\n"))
            self._summary[idx] = si
            out.append(ThinkingDelta(idx, ev.get("delta") or ""))
            return out
        if kind == "response.output_item.added":
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                self._saw_tool = True
                idx = self._idx((oi, -1))
                self._args[idx] = len(item.get("arguments") or "")
                out = [ToolCallStart(idx, item.get("call_id") or new_id("call_"), item.get("name") or "")]
                if item.get("arguments"):
                    out.append(ToolCallDelta(idx, item["arguments"]))
                return out
            if item.get("type") == "reasoning":
                return [ThinkingDelta(self._idx((oi, -1)), "")]
            return []
        if kind == "response.content_part.done":
            key = (oi, ev.get("content_index", 0))
            return [PartEnd(self._parts[key])] if key in self._parts else []
        if kind == "response.output_item.done":
            return self._item_done(oi, ev.get("item") or {})
        if kind == "response.created":
            r = ev.get("response") or {}
            return [StreamStart(id=r.get("id") or new_id("resp_"), model=r.get("model") or "")]
        if kind in ("response.completed", "response.incomplete"):
            self._ended = True
            r = ev.get("response") or {}
            stop = _stop_of(r.get("status"), r.get("incomplete_details"), [])
            if stop == "end_turn" and self._saw_tool:
                stop = "tool_use"
            return [StreamEnd(stop_reason=stop, usage=parse_usage(r.get("usage")))]
        if kind == "response.failed":
            self._ended = True
            err = (ev.get("response") or {}).get("error") or {}
            return [StreamError(err.get("message") or "upstream response failed", status=500)]
        if kind == "error":
            self._ended = True
            return [
                StreamError(ev.get("message") or "upstream error", status=500, error_type=ev.get("code") or "api_error")
            ]
        return []

    def _item_done(self, oi: int, item: dict[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        out: list[StreamEvent] = []
        if kind == "function_call":
            idx = self._idx((oi, -1))
            if idx not in self._args:  # an upstream that only sends finished items
                self._saw_tool = True
                out.append(ToolCallStart(idx, item.get("call_id") or new_id("call_"), item.get("name") or ""))
                self._args[idx] = 0
            args = item.get("arguments") or ""
            if len(args) > self._args[idx]:
                out.append(ToolCallDelta(idx, args[self._args[idx] :]))
                self._args[idx] = len(args)
            out.append(PartEnd(idx))
        elif kind == "reasoning":
            idx = self._idx((oi, -1))
            if item.get("encrypted_content"):
                out.append(ThinkingDelta(idx, "", signature=item["encrypted_content"]))
            out.append(PartEnd(idx))
        elif kind == "message":
            for ci, c in enumerate(item.get("content") or []):
                key = (oi, ci)
                if key not in self._parts and c.get("text"):  # text only present in the finished item
                    out.append(TextDelta(self._idx(key), c["text"]))
                    out.append(PartEnd(self._parts[key]))
        return out

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        return [StreamError(message="upstream stream ended before completion", status=502)]


class StreamWriter:
    """Canonical events -> Responses events with ``sequence_number``; each canonical text part becomes
    one message item, each tool call one function_call item."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = False,
        tool_namespaces: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.keep_signatures = keep_signatures
        self.namespaces = tool_namespaces
        self._seq = 0
        self._id = new_id("resp_")
        self._created = int(time.time())
        self._started = False
        self._done = False
        # canonical index -> [output_index, item dict, accumulated text/arguments, closed]
        self._items: dict[int, list[Any]] = {}
        self._output: list[dict[str, Any] | None] = []
        self._dropped: set[int] = set()
        self.usage: Usage | None = None
        self.stop_reason: StopReason | None = None

    def _ev(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._seq
        self._seq += 1
        return sse.json_frame(payload, kind)

    def _start(self) -> bytes:
        self._started = True
        resp = _response_object(self._id, self.model, "in_progress", [], None, self._created)
        return self._ev("response.created", {"response": resp}) + self._ev("response.in_progress", {"response": resp})

    def _add(self, idx: int, item: dict[str, Any]) -> tuple[bytes, int]:
        oi = len(self._output)
        self._output.append(None)
        self._items[idx] = [oi, item, "", False]
        return self._ev("response.output_item.added", {"output_index": oi, "item": dict(item)}), oi

    def write(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        head = b"" if self._started else self._start()
        if isinstance(ev, TextDelta):
            return head + self._text(ev)
        if isinstance(ev, ToolCallDelta):
            st = self._items.get(ev.index)
            if st is None:
                return head
            st[2] += ev.arguments
            payload = {"item_id": st[1]["id"], "output_index": st[0], "delta": ev.arguments}
            return head + self._ev("response.function_call_arguments.delta", payload)
        if isinstance(ev, ToolCallStart):
            item = _call_item(new_id("fc_"), ev.id, ev.name, "", "in_progress", self.namespaces)
            return head + self._add(ev.index, item)[0]
        if isinstance(ev, ThinkingDelta):
            return head + self._thinking(ev)
        if isinstance(ev, PartEnd):
            return head + self._finish_item(ev.index)
        if isinstance(ev, StreamEnd):
            self._done = True
            self.usage, self.stop_reason = ev.usage, ev.stop_reason
            out = head + b"".join(self._finish_item(i) for i in list(self._items))
            status, incomplete = _status_for(ev.stop_reason)
            output = [o for o in self._output if o is not None]
            resp = _response_object(self._id, self.model, status, output, ev.usage, self._created)
            resp["incomplete_details"] = incomplete
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return out + self._ev(kind, {"response": resp})
        if isinstance(ev, StreamError):
            self._done = True
            self.stop_reason = "error"
            code = openai_error_type(ev.status)
            out = head + self._ev("error", {"code": code, "message": ev.message, "param": None})
            output = [o for o in self._output if o is not None]
            resp = _response_object(self._id, self.model, "failed", output, None, self._created)
            resp["error"] = {"code": "server_error" if ev.status >= 500 else code, "message": ev.message}
            return out + self._ev("response.failed", {"response": resp})
        return head  # StreamStart

    def _text(self, ev: TextDelta) -> bytes:
        out = b""
        st = self._items.get(ev.index)
        if st is None:
            out, oi = self._add(ev.index, _message_item(new_id("msg_"), "", "in_progress"))
            st = self._items[ev.index]
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            payload = {"item_id": st[1]["id"], "output_index": oi, "content_index": 0, "part": part}
            out += self._ev("response.content_part.added", payload)
        st[2] += ev.text
        payload = {"item_id": st[1]["id"], "output_index": st[0], "content_index": 0, "delta": ev.text, "logprobs": []}
        return out + self._ev("response.output_text.delta", payload)

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        # Reasoning without OpenAI's encrypted_content cannot be sent back by a store:false client.
        if not self.keep_signatures or ev.redacted or ev.index in self._dropped:
            self._dropped.add(ev.index)
            return b""
        out = b""
        st = self._items.get(ev.index)
        if st is None:
            out, oi = self._add(ev.index, {"type": "reasoning", "id": new_id("rs_"), "summary": []})
            st = self._items[ev.index]
            st.append(None)  # signature slot
            st.append(False)  # summary part opened
        if ev.signature:
            st[4] = ev.signature
        if ev.text:
            if not st[5]:
                st[5] = True
                out += self._ev(
                    "response.reasoning_summary_part.added",
                    {
                        "item_id": st[1]["id"],
                        "output_index": st[0],
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    },
                )
            st[2] += ev.text
            out += self._ev(
                "response.reasoning_summary_text.delta",
                {"item_id": st[1]["id"], "output_index": st[0], "summary_index": 0, "delta": ev.text},
            )
        return out

    def _finish_item(self, idx: int) -> bytes:
        st = self._items.get(idx)
        if st is None or st[3]:
            return b""
        st[3] = True
        oi, item, acc = st[0], st[1], st[2]
        kind = item["type"]
        if kind == "message":
            done = _message_item(item["id"], acc, "completed")
            part = done["content"][0]
            out = self._ev(
                "response.output_text.done",
                {"item_id": item["id"], "output_index": oi, "content_index": 0, "text": acc, "logprobs": []},
            )
            out += self._ev(
                "response.content_part.done",
                {"item_id": item["id"], "output_index": oi, "content_index": 0, "part": part},
            )
        elif kind == "function_call":
            done = {**item, "arguments": acc, "status": "completed"}
            out = self._ev(
                "response.function_call_arguments.done", {"item_id": item["id"], "output_index": oi, "arguments": acc}
            )
        else:
            done = _reasoning_item(item["id"], acc, st[4])
            out = b""
            if st[5]:
                base = {"item_id": item["id"], "output_index": oi, "summary_index": 0}
                out += self._ev("response.reasoning_summary_text.done", {**base, "text": acc})
                out += self._ev(
                    "response.reasoning_summary_part.done", {**base, "part": {"type": "summary_text", "text": acc}}
                )
        self._output[oi] = done
        return out + self._ev("response.output_item.done", {"output_index": oi, "item": done})


def _texts(items: Any) -> list[str]:
    """The ``text`` strings of a list of parts; anything else (wrong types from a client) is skipped."""
    if not isinstance(items, list):
        return []
    return [t for p in items if isinstance(p, dict) and isinstance(t := p.get("text"), str)]
