"""OpenAI Chat Completions <-> canonical.

Usage convention (all dialects): canonical ``input_tokens`` counts every prompt token, cached ones
included (OpenAI's ``prompt_tokens``); ``cached_input_tokens`` is the cache-read share of it.
"""

from __future__ import annotations

import time
import uuid
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
    ResponseFormat,
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

DIALECT: Final[Dialect] = "openai_chat"
_decode = msgspec.json.decode

_KNOWN = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
        "max_completion_tokens", "temperature", "top_p", "stop", "stream", "reasoning_effort",
        "response_format", "metadata", "user",
    }
)  # fmt: skip
# Fields an OpenAI upstream rejects unless they came from an OpenAI client (store-only or long ids).
_SAME_DIALECT_ONLY_USER_LEN = 64

FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "error": "stop",
}


# ---------------------------------------------------------------- helpers shared with openai_responses


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def split_data_url(url: str) -> tuple[str | None, str | None]:
    """``data:image/png;base64,AAA`` -> (``image/png``, ``AAA``); (None, None) for other URLs."""
    if not url.startswith("data:"):
        return None, None
    head, _, payload = url.partition(",")
    media_type = head[5:].split(";", 1)[0] or None
    return media_type, payload


def data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model is required", param="model")
    return model


def expect(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise TranslationError(message, param=param)


def effort_from_budget(budget: int | None) -> str:
    if budget is None:
        return "medium"
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 16384 else "high"


def user_for_upstream(req: CanonicalRequest, dialect: str) -> str | None:
    """Another dialect's user id (Claude Code puts a JSON blob there) only goes out when it is short."""
    if req.user is None:
        return None
    if req.dialect == dialect or len(req.user) <= _SAME_DIALECT_ONLY_USER_LEN:
        return req.user
    return None


def drop(req_extra: dict[str, Any], reason: str) -> None:
    req_extra.setdefault("dropped", []).append(reason)


def extra_fields(req: CanonicalRequest, dialect: str) -> dict[str, Any]:
    """The client's own unknown fields, only relayed to an upstream of the same dialect."""
    if req.dialect != dialect or not req.extra:
        return {}
    return {k: v for k, v in req.extra.items() if k != "dropped"}


# ---------------------------------------------------------------- request


def _text_of(content: Any, param: str) -> list[TextPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    expect(isinstance(content, list), f"{param} must be a string or a list", param)
    out = []
    for i, p in enumerate(content):
        expect(isinstance(p, dict), f"{param}[{i}] must be an object", f"{param}[{i}]")
        if p.get("type") in ("text", "input_text", "output_text"):
            out.append(TextPart(_str(p.get("text"), f"{param}[{i}].text")))
    return out


def _str(value: Any, param: str) -> str:
    expect(isinstance(value, str), f"{param} must be a string", param)
    return value


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
            parts.append(TextPart(_str(p.get("text"), f"{where}.text")))
        elif kind == "image_url":
            img = p.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            url = _str(url, f"{where}.image_url.url")
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


def _tool_result_content(content: Any, param: str) -> list[TextPart | ImagePart | DocumentPart]:
    return list(_text_of(content, param))


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    expect(isinstance(body, dict), "request body must be a JSON object", "body")
    model = required_model(body)
    msgs: Any = body.get("messages")
    expect(isinstance(msgs, list), "messages must be a list", "messages")
    extra: dict[str, Any] = {k: v for k, v in body.items() if k not in _KNOWN}
    req = CanonicalRequest(model=model, messages=[], dialect=DIALECT, extra=extra)

    leading = True
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        expect(isinstance(m, dict), f"{where} must be an object", where)
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            texts = _text_of(content, f"{where}.content")
            if leading:
                req.system.extend(texts)
            else:
                req.messages.append(Message("system", list(texts)))
            continue
        leading = False
        if role == "user":
            req.messages.append(Message("user", _user_parts(content, f"{where}.content", extra)))
        elif role == "assistant":
            parts: list[Part] = []
            reasoning = m.get("reasoning_content") or m.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                parts.append(ThinkingPart(reasoning))
            parts.extend(_text_of(content, f"{where}.content"))
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
                    ToolCallPart(_str(tc.get("id"), f"{tw}.id"), _str(fn.get("name"), f"{tw}.function.name"), args)
                )
            req.messages.append(Message("assistant", parts))
        elif role == "tool":
            result = ToolResultPart(
                _str(m.get("tool_call_id"), f"{where}.tool_call_id"),
                _tool_result_content(content, f"{where}.content"),
            )
            last = req.messages[-1] if req.messages else None
            if last is not None and last.role == "tool":
                last.parts.append(result)
            else:
                req.messages.append(Message("tool", [result]))
        else:
            raise TranslationError(f"{where}.role {role!r} is not supported", param=f"{where}.role")

    tools = body.get("tools")
    if tools is not None:
        expect(isinstance(tools, list), "tools must be a list", "tools")
        for i, t in enumerate(tools):
            expect(isinstance(t, dict), f"tools[{i}] must be an object", f"tools[{i}]")
            if t.get("type", "function") != "function":
                drop(extra, f"tool type {t.get('type')!r} (tools[{i}]) has no equivalent and was dropped")
                continue
            fn = t.get("function")
            expect(isinstance(fn, dict), f"tools[{i}].function must be an object", f"tools[{i}].function")
            req.tools.append(
                Tool(
                    name=_str(fn.get("name"), f"tools[{i}].function.name"),
                    description=fn.get("description") or "",
                    parameters=fn.get("parameters") or {"type": "object", "properties": {}},
                )
            )
    req.tool_choice = _parse_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))

    req.max_tokens = _int(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens")
    req.temperature = _num(body.get("temperature"), "temperature")
    req.top_p = _num(body.get("top_p"), "top_p")
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
    meta = body.get("metadata")
    if isinstance(meta, dict):
        req.metadata = {str(k): str(v) for k, v in meta.items()}
    if isinstance(body.get("user"), str):
        req.user = body["user"]
    return req


def _int(v: Any, param: str) -> int | None:
    if v is None:
        return None
    expect(isinstance(v, int) and not isinstance(v, bool), f"{param} must be an integer", param)
    return int(v)


def _num(v: Any, param: str) -> float | None:
    if v is None:
        return None
    expect(isinstance(v, int | float) and not isinstance(v, bool), f"{param} must be a number", param)
    return float(v)


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


def parse_response_format(rf: Any, param: str) -> ResponseFormat | None:
    """Chat ``response_format`` and Responses ``text.format`` share this shape (schema nested or flat)."""
    if rf is None:
        return None
    expect(isinstance(rf, dict), f"{param} must be an object", param)
    kind = rf.get("type")
    if kind == "json_schema":
        js = rf.get("json_schema") if isinstance(rf.get("json_schema"), dict) else rf
        return ResponseFormat("json_schema", schema=js.get("schema"), name=js.get("name"), strict=js.get("strict"))
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    raise TranslationError(f"{param}.type {kind!r} is not supported", param=f"{param}.type")


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
            calls = [
                {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
                for p in m.parts
                if isinstance(p, ToolCallPart)
            ]
            if calls:
                msg["tool_calls"] = calls
            if keep_reasoning:
                reasoning = "".join(p.text for p in m.parts if isinstance(p, ThinkingPart) and p.signature is None)
                if reasoning:
                    msg["reasoning_content"] = reasoning
            out.append(msg)
    return out


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


# ---------------------------------------------------------------- response


def parse_usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    details = u.get("prompt_tokens_details") or {}
    out_details = u.get("completion_tokens_details") or {}
    cached = details.get("cached_tokens") or u.get("prompt_cache_hit_tokens") or 0
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cached_input_tokens=cached,
        cache_creation_input_tokens=details.get("cache_write_tokens") or 0,
        reasoning_tokens=out_details.get("reasoning_tokens") or 0,
    )


def render_usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    expect(isinstance(body, dict), "response body must be a JSON object", "body")
    choices = body.get("choices")
    expect(isinstance(choices, list), "choices must be a list", "choices")
    parts: list[Part] = []
    finish = None
    if choices:
        choice = choices[0]
        msg = choice.get("message") or {}
        finish = choice.get("finish_reason")
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ThinkingPart(reasoning))
        content = msg.get("content")
        if isinstance(content, str) and content:
            parts.append(TextPart(content))
        elif isinstance(content, list):
            parts.extend(_text_of(content, "choices[0].message.content"))
        if msg.get("refusal"):
            parts.append(TextPart(msg["refusal"]))
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
            parts.append(ToolCallPart(tc.get("id") or new_id("call_"), fn.get("name") or "", fn.get("arguments") or ""))
    stop = FINISH_TO_STOP.get(finish or "stop", "end_turn")
    if stop == "end_turn" and any(isinstance(p, ToolCallPart) for p in parts):
        stop = "tool_use"
    return CanonicalResponse(
        id=body.get("id") or new_id("chatcmpl-"),
        model=body.get("model") or "",
        parts=parts,
        stop_reason=stop,
        usage=parse_usage(body.get("usage")),
    )


def render_response(resp: CanonicalResponse, *, model: str) -> dict[str, Any]:
    texts = [p.text for p in resp.parts if isinstance(p, TextPart)]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    calls = [
        {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
        for p in resp.parts
        if isinstance(p, ToolCallPart)
    ]
    if calls:
        msg["tool_calls"] = calls
    reasoning = "".join(p.text for p in resp.parts if isinstance(p, ThinkingPart))
    if reasoning:
        msg["reasoning_content"] = reasoning
    rid = resp.id if resp.id.startswith("chatcmpl") else "chatcmpl-" + resp.id
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": msg, "finish_reason": STOP_TO_FINISH[resp.stop_reason], "logprobs": None}],
        "usage": render_usage(resp.usage),
    }


# ---------------------------------------------------------------- errors


_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_type(status: int) -> str:
    if status in _OPENAI_ERROR_TYPES:
        return _OPENAI_ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def render_error(
    status: int, message: str, *, error_type: str | None = None, param: str | None = None
) -> dict[str, Any]:
    kind = error_type or openai_error_type(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


# ---------------------------------------------------------------- streaming


class StreamParser:
    """Chat completion chunks -> canonical events.

    The finish chunk may come before the usage chunk (``stream_options.include_usage``), so the end is
    emitted on the usage-only chunk, on ``[DONE]``, or by ``close()`` when the upstream just stops.
    """

    __slots__ = ("_started", "_ended", "_next", "_open", "_text", "_thinking", "_tools", "_stop", "_usage", "_saw_tool")

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._next = 0
        self._open: int | None = None  # canonical index of the part receiving deltas
        self._text: int | None = None
        self._thinking: int | None = None
        self._tools: dict[int, tuple[int, str]] = {}  # upstream tool index -> (canonical index, id)
        self._stop: StopReason | None = None
        self._usage: Usage | None = None
        self._saw_tool = False

    def _begin(self, out: list[StreamEvent]) -> int:
        if self._open is not None:
            out.append(PartEnd(self._open))
        idx = self._next
        self._next += 1
        self._open = idx
        return idx

    def _close_open(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(PartEnd(self._open))
            self._open = None

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        if data.startswith("[DONE]"):
            return self._finish()
        try:
            chunk = _decode(data)
        except msgspec.DecodeError:
            return []  # keep-alive garbage from some servers
        if not isinstance(chunk, dict):
            return []
        out: list[StreamEvent] = []
        err = chunk.get("error")
        if err:
            self._ended = True
            msg = err.get("message") if isinstance(err, dict) else str(err)
            code = err.get("code") if isinstance(err, dict) else None
            status = code if isinstance(code, int) else 500
            return [StreamError(message=msg or "upstream error", status=status, error_type="api_error")]
        if not self._started:
            self._started = True
            out.append(StreamStart(id=chunk.get("id") or new_id("chatcmpl-"), model=chunk.get("model") or ""))
        choices = chunk.get("choices") or []
        for choice in choices:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not routed; only the first choice is relayed
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self._thinking is None or self._open != self._thinking:
                    self._thinking = self._begin(out)
                out.append(ThinkingDelta(self._thinking, reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self._text is None or self._open != self._text:
                    self._text = self._begin(out)
                out.append(TextDelta(self._text, content))
            for pos, tc in enumerate(delta.get("tool_calls") or ()):
                self._tool_delta(tc, pos, out)
            finish = choice.get("finish_reason")
            if finish:
                self._close_open(out)
                stop = FINISH_TO_STOP.get(finish, "end_turn")
                self._stop = "tool_use" if stop == "end_turn" and self._saw_tool else stop
        usage = chunk.get("usage")
        if usage:
            self._usage = parse_usage(usage)
            if self._stop is not None and not choices:
                out.extend(self._finish())
        return out

    def _tool_delta(self, tc: dict[str, Any], pos: int, out: list[StreamEvent]) -> None:
        up = tc.get("index", pos)
        fn = tc.get("function") or {}
        tid = tc.get("id")
        known = self._tools.get(up)
        if known is None or (tid and tid != known[1]):
            idx = self._begin(out)
            tid = tid or new_id("call_")
            self._tools[up] = (idx, tid)
            self._saw_tool = True
            out.append(ToolCallStart(idx, tid, fn.get("name") or ""))
        else:
            # Interleaved parallel deltas for an earlier call are relayed to that part as they come.
            idx = known[0]
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(ToolCallDelta(idx, args))

    def _finish(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        out: list[StreamEvent] = []
        self._close_open(out)
        stop = self._stop or ("tool_use" if self._saw_tool else "end_turn")
        out.append(StreamEnd(stop_reason=stop, usage=self._usage or Usage()))
        return out

    def close(self) -> list[StreamEvent]:
        """The upstream body ended. Without a finish_reason the stream was cut: report an error."""
        if self._ended:
            return []
        if self._stop is None:
            self._ended = True
            return [StreamError(message="upstream stream ended before completion", status=502)]
        return self._finish()


class StreamWriter:
    """Canonical events -> chat.completion.chunk frames for an OpenAI chat client."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = False,
        tool_namespaces: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self._id = new_id("chatcmpl-")
        self._created = int(time.time())
        self._started = False
        self._done = False
        self._tools: dict[int, int] = {}  # canonical index -> chat tool_calls index
        self.usage: Usage | None = None
        self.stop_reason: StopReason | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse.json_frame(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
        )

    def _start(self) -> bytes:
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def write(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, StreamError):
            self._done = True
            self.stop_reason = "error"
            return sse.json_frame(render_error(ev.status, ev.message))
        head = b"" if self._started else self._start()
        if isinstance(ev, TextDelta):
            return head + self._chunk({"content": ev.text})
        if isinstance(ev, ToolCallDelta):
            n = self._tools.get(ev.index)
            if n is None:
                return head
            return head + self._chunk({"tool_calls": [{"index": n, "function": {"arguments": ev.arguments}}]})
        if isinstance(ev, ToolCallStart):
            n = self._tools[ev.index] = len(self._tools)
            fn = {"name": ev.name, "arguments": ""}
            return head + self._chunk({"tool_calls": [{"index": n, "id": ev.id, "type": "function", "function": fn}]})
        if isinstance(ev, ThinkingDelta):
            # DeepSeek-style reasoning_content: clients that do not know it ignore it
            return head + (self._chunk({"reasoning_content": ev.text}) if ev.text else b"")
        if isinstance(ev, StreamEnd):
            self._done = True
            self.usage, self.stop_reason = ev.usage, ev.stop_reason
            out = head + self._chunk({}, STOP_TO_FINISH[ev.stop_reason])
            if self.include_usage:
                last = {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self.model,
                    "choices": [],
                    "usage": render_usage(ev.usage),
                }
                out += sse.json_frame(last)
            return out + sse.DONE_FRAME
        return head  # StreamStart, PartEnd
