"""Google Gemini API wire format (``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent``,
``:countTokens``), as gemini-cli and the google-genai SDKs use it.

The model and whether to stream come from the URL, not the body; the app passes them in. Streams are
SSE ``data:`` lines (``?alt=sse``), each a whole ``GenerateContentResponse`` carrying the parts
generated since the previous one; the last carries ``finishReason`` and the complete usage.
"""

from __future__ import annotations

import json
from typing import Any

from streams.providers.sim.plan import Plan, SimRequest, ToolSpec
from streams.providers.sim.signatures import GEMINI_SKIP, InvalidSignature, sign, valid
from streams.providers.sim.sse import Frame, chunk_tokens, data_frame, new_id
from streams.providers.sim.usage import PromptCache, Usage, estimate_tokens

DIALECT = "gemini"
MALFORMED = b'data: {"candidates": [{"content": {"parts": [{"text": "bro\n\n'
_FINISH = {"end": "STOP", "tool_use": "STOP", "max_tokens": "MAX_TOKENS"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
METHODS = ("generateContent", "streamGenerateContent", "countTokens")


class WireError(ValueError):
    """A request the API would reject with 400 INVALID_ARGUMENT."""


def error_body(status: int, message: str) -> dict[str, Any]:
    code = _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": code}}


# -- request -------------------------------------------------------------------------------------------
def _texts(parts: list[Any]) -> str:
    return "\n".join(
        str(p["text"]) for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types in capitals (``STRING``); JSON Schema does not."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _contents(body: dict[str, Any]) -> list[dict[str, Any]]:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise WireError("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise WireError(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty")
        if content.get("role", "user") not in ("user", "model", "function"):
            raise WireError(f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model.")
    return contents


def parse(body: dict[str, Any], model: str, stream: bool) -> SimRequest:
    contents = _contents(body)
    check_signatures(model, contents)
    req = SimRequest(dialect=DIALECT, model=model, stream=stream)
    last = contents[-1]
    results = [p["functionResponse"] for p in last["parts"] if isinstance(p, dict) and "functionResponse" in p]
    req.after_tool_result = last.get("role", "user") != "model" and bool(results)
    req.tool_result_text = "\n".join(json.dumps(r.get("response"), separators=(",", ":")) for r in results)
    req.last_user_text = next(
        (t for c in reversed(contents) if c.get("role", "user") == "user" and (t := _texts(c["parts"]))), ""
    )
    for tool in body.get("tools") or []:
        # functionDeclarations are the caller's; googleSearch, codeExecution, ... run on Google's side.
        for decl in (tool.get("functionDeclarations") or []) if isinstance(tool, dict) else []:
            if isinstance(decl, dict) and decl.get("name"):
                schema = decl.get("parametersJsonSchema") or _lower_types(decl.get("parameters") or {})
                req.tools.append(ToolSpec(str(decl["name"]), schema))
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
    mode = str(calling.get("mode", "AUTO")).upper()
    allowed = [str(n) for n in calling.get("allowedFunctionNames") or []]
    if mode == "NONE":
        req.tool_choice = "none"
    elif mode == "ANY":
        req.tool_choice = "tool:" + allowed[0] if len(allowed) == 1 else "required"
    config = body.get("generationConfig") or {}
    limit = config.get("maxOutputTokens")
    req.max_tokens = limit if isinstance(limit, int) and limit > 0 else None
    if config.get("responseMimeType") == "application/json":
        schema = _lower_types(config.get("responseJsonSchema") or config.get("responseSchema") or {})
        req.json_schema = schema if isinstance(schema, dict) else {}
    thinking = config.get("thinkingConfig") or {}
    req.thinking = bool(thinking.get("includeThoughts")) and thinking.get("thinkingBudget") != 0
    return req


def count_tokens(body: dict[str, Any], raw_len: int) -> dict[str, Any]:
    # Either {contents} or {generateContentRequest: {model, contents, ...}}.
    inner = body.get("generateContentRequest")
    _contents(inner if isinstance(inner, dict) else body)
    total = estimate_tokens(raw_len)
    return {"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]}


def usage(body: dict[str, Any], raw: bytes, plan: Plan, cache: PromptCache) -> Usage:
    # Implicit caching keys on the prompt prefix; the cachedContent name is the explicit cache.
    key = body.get("cachedContent") or None
    total = estimate_tokens(len(raw))
    return Usage(total, plan.output_tokens, cache_read=cache.openai(str(body.get("model")), key, total))


def usage_json(u: Usage, plan: Plan | None) -> dict[str, Any]:
    thoughts = len(plan.thinking) if plan is not None else 0
    candidates = (u.output_tokens - thoughts) if plan is not None else 0
    out: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "totalTokenCount": u.input_tokens + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.input_tokens}],
    }
    if plan is not None:
        out["candidatesTokenCount"] = candidates
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    if u.cache_read:
        out["cachedContentTokenCount"] = u.cache_read
    return out


# -- response --------------------------------------------------------------------------------------------
def _signature(model: str, call_name: str) -> str:
    # Bound to the model and the signed call, so it verifies from the part it comes back on.
    return sign(model, call_name)


def check_signatures(model: str, contents: list[dict[str, Any]]) -> None:
    """A thoughtSignature must be this model's own (or gemini-cli's skip marker): Gemini's 400 else."""
    for c in contents:
        if c.get("role") != "model":
            continue
        for p in c["parts"]:
            value = p.get("thoughtSignature") if isinstance(p, dict) else None
            if value is None or value == GEMINI_SKIP:
                continue
            call = p.get("functionCall")
            name = str(call.get("name", "")) if isinstance(call, dict) else ""
            if not valid(model, name, value):
                raise InvalidSignature("Corrupted thought signature.")


def _call_parts(plan: Plan, req: SimRequest) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for i, call in enumerate(plan.tool_calls):
        try:
            args = json.loads(call.arguments)
        except ValueError:
            args = {}
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": args}}
        if i == 0 and req.thinking:
            part["thoughtSignature"] = _signature(req.model, call.name)  # thinking models sign the first call of a turn
        parts.append(part)
    return parts


def _response(
    req: SimRequest, rid: str, parts: list[dict[str, Any]], finish: str | None, u: dict[str, Any]
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": u, "modelVersion": req.model, "responseId": rid}


def render(plan: Plan, req: SimRequest, u: Usage) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if plan.thinking:
        parts.append({"text": plan.thinking_str, "thought": True})
    if plan.text:
        parts.append({"text": plan.text_str})
    parts += _call_parts(plan, req)
    return _response(req, new_id("")[:22], parts, _FINISH[plan.stop], usage_json(u, plan))


def stream(plan: Plan, req: SimRequest, u: Usage, chunk_size: int) -> list[Frame]:
    rid, running = new_id("")[:22], usage_json(u, None)
    pieces: list[tuple[dict[str, Any], int]] = [
        *(({"text": t, "thought": True}, n) for t, n in chunk_tokens(plan.thinking, chunk_size)),
        *(({"text": t}, n) for t, n in chunk_tokens(plan.text, chunk_size)),
    ]
    calls = _call_parts(plan, req)
    frames: list[Frame] = []
    for i, (part, n) in enumerate(pieces):
        if i == len(pieces) - 1 and not calls:
            break
        frames.append(data_frame(_response(req, rid, [part], None, running), n))
    # The last chunk carries the finish reason and the full usage (function calls arrive whole).
    last, n = ([pieces[-1][0]], pieces[-1][1]) if pieces and not calls else ([], 0)
    frames.append(data_frame(_response(req, rid, last + calls, _FINISH[plan.stop], usage_json(u, plan)), n or 1))
    return frames


def model_json(name: str) -> dict[str, Any]:
    return {
        "name": "models/" + name,
        "version": "001",
        "displayName": name,
        "description": "weave-router simulated model",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1.0,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2.0,
        "thinking": True,
    }
