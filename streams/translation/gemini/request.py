"""Gemini ``generateContent`` requests: the client's body -> canonical, canonical -> an upstream body.

A Gemini body names neither its model nor whether to stream: both are in the URL
(``/v1beta/models/{model}:streamGenerateContent``). The gateway's Gemini endpoint puts them into the
decoded body as ``model`` and ``stream`` before parsing (a Kafka ``RouteRequest`` names the model in
its body the same way), and ``render_request`` leaves them out: ``streams.providers.upstream`` puts
them into the upstream URL.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from streams.translation.canonical import (
    CanonicalRequest,
    Dialect,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
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
    append_tool_result,
    drop,
    effort_from_budget,
    expect,
    extra_fields,
    int_field,
    new_request,
    number_field,
    string_field,
)
from streams.translation.gemini.parts import (
    CallIds,
    call_arguments,
    lower_schema_types,
    media_part,
    render_media,
    render_model_parts,
    render_result,
    tool_result,
)

DIALECT: Final[Dialect] = "gemini"
JSON_MIME = "application/json"
# Reasoning effort -> thinking budget (tokens) for a Gemini model; "none" turns thinking off.
_EFFORT_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}
_TOOL_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "AUTO": "auto",
    "ANY": "required",
    "VALIDATED": "auto",
    "NONE": "none",
}

_KNOWN = frozenset(
    {"model", "stream", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
)
_KNOWN_GENERATION = frozenset(
    {
        "maxOutputTokens", "temperature", "topP", "stopSequences", "responseMimeType", "responseJsonSchema",
        "responseSchema", "thinkingConfig", "candidateCount",
    }
)  # fmt: skip


def _object(value: Any, param: str) -> dict[str, Any]:
    expect(isinstance(value, dict), f"{param} must be an object", param)
    return value


def _list(value: Any, param: str) -> list[Any]:
    expect(isinstance(value, list), f"{param} must be a list", param)
    return value


def parse_request(body: dict[str, Any]) -> CanonicalRequest:
    req = new_request(body, DIALECT, _KNOWN)
    req.stream = body.get("stream") is True

    system = body.get("systemInstruction")
    if system is not None:
        if isinstance(system, str):
            req.system.append(TextPart(system))
        else:
            parts = _list(_object(system, "systemInstruction").get("parts", []), "systemInstruction.parts")
            for i, p in enumerate(parts):
                text = _object(p, f"systemInstruction.parts[{i}]").get("text")
                if isinstance(text, str) and text:
                    req.system.append(TextPart(text))

    contents = _list(body.get("contents"), "contents")
    expect(bool(contents), "contents is not specified", "contents")
    ids = CallIds()
    for i, content in enumerate(contents):
        _parse_content(req, _object(content, f"contents[{i}]"), i, ids)

    _parse_tools(req, body)
    _parse_generation(req, body.get("generationConfig"))
    return req


def _parse_content(req: CanonicalRequest, content: dict[str, Any], turn: int, ids: CallIds) -> None:
    where = f"contents[{turn}]"
    role = content.get("role") or "user"
    if role not in ("user", "model", "function"):
        raise TranslationError(f"{where}.role {role!r} is not valid: use user or model", param=f"{where}.role")
    parts = _list(content.get("parts"), f"{where}.parts")
    out: list[Part] = []
    results: list[ToolResultPart] = []
    for j, raw in enumerate(parts):
        pw = f"{where}.parts[{j}]"
        p = _object(raw, pw)
        if "functionCall" in p:
            fn = _object(p["functionCall"], f"{pw}.functionCall")
            name = string_field(fn.get("name"), f"{pw}.functionCall.name")
            out.append(ToolCallPart(ids.call(fn, turn, j), name, call_arguments(fn.get("args"))))
        elif "functionResponse" in p:
            fn = _object(p["functionResponse"], f"{pw}.functionResponse")
            string_field(fn.get("name"), f"{pw}.functionResponse.name")
            extra_parts = _list(fn.get("parts") or [], f"{pw}.functionResponse.parts")
            media = [media_part(x["inlineData"], f"{pw}.functionResponse.parts", by_uri=False)
                     for x in extra_parts if isinstance(x, dict) and "inlineData" in x]  # fmt: skip
            results.append(tool_result(fn, ids.result(fn, turn, j), media))
        elif "text" in p:
            text = string_field(p["text"], f"{pw}.text")
            if p.get("thought") is True:
                out.append(ThinkingPart(text))
            elif text:
                out.append(TextPart(text))
        elif "inlineData" in p:
            out.append(media_part(p["inlineData"], f"{pw}.inlineData", by_uri=False))
        elif "fileData" in p:
            out.append(media_part(p["fileData"], f"{pw}.fileData", by_uri=True))
        else:
            kinds = ",".join(sorted(k for k in p if k != "thoughtSignature")) or "empty"
            drop(req.extra, f"part {kinds!r} at {pw} has no equivalent and was dropped")
    for result in results:  # canonical form: results in a tool message, before the user's own text
        append_tool_result(req, result)
    if out:
        req.messages.append(Message("assistant" if role == "model" else "user", out))
    elif not results and role != "model":
        req.messages.append(Message("user", []))


def _parse_tools(req: CanonicalRequest, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        for i, t in enumerate(_list(tools, "tools")):
            tool = _object(t, f"tools[{i}]")
            decls = _list(tool.get("functionDeclarations") or [], f"tools[{i}].functionDeclarations")
            for j, d in enumerate(decls):
                dw = f"tools[{i}].functionDeclarations[{j}]"
                decl = _object(d, dw)
                # JSON Schema spells types in lower case; Gemini takes (and gemini-cli sends) "OBJECT" too.
                schema = lower_schema_types(decl.get("parametersJsonSchema") or decl.get("parameters"))
                req.tools.append(
                    Tool(
                        name=string_field(decl.get("name"), f"{dw}.name"),
                        description=decl.get("description") or "",
                        parameters=schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
                    )
                )
            hosted = sorted(k for k in tool if k != "functionDeclarations")
            if hosted:
                drop(req.extra, f"tools[{i}] {', '.join(hosted)} run on Google's side and were dropped")
    config = body.get("toolConfig")
    if isinstance(config, dict) and isinstance(config.get("functionCallingConfig"), dict):
        calling = config["functionCallingConfig"]
        mode = _TOOL_MODES.get(str(calling.get("mode") or "AUTO").upper())
        expect(mode is not None, "toolConfig.functionCallingConfig.mode is not valid",
               "toolConfig.functionCallingConfig.mode")  # fmt: skip
        allowed = calling.get("allowedFunctionNames") or []
        if mode == "required" and isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
            req.tool_choice = ToolChoice(mode="tool", name=allowed[0])
        elif mode is not None:
            req.tool_choice = ToolChoice(mode=mode)


def _parse_generation(req: CanonicalRequest, config: Any) -> None:
    if config is None:
        return
    gc = _object(config, "generationConfig")
    candidates = int_field(gc.get("candidateCount"), "generationConfig.candidateCount")
    # One answer per request is what is routed, relayed and traced: refuse more rather than drop them.
    expect(candidates is None or candidates == 1, "generationConfig.candidateCount must be 1 through this router",
           "generationConfig.candidateCount")  # fmt: skip
    req.max_tokens = int_field(gc.get("maxOutputTokens"), "generationConfig.maxOutputTokens")
    req.temperature = number_field(gc.get("temperature"), "generationConfig.temperature")
    req.top_p = number_field(gc.get("topP"), "generationConfig.topP")
    stops = gc.get("stopSequences")
    if isinstance(stops, list):
        req.stop = [s for s in stops if isinstance(s, str)]
    if gc.get("responseMimeType") == JSON_MIME:
        schema = lower_schema_types(gc.get("responseJsonSchema") or gc.get("responseSchema"))
        req.response_format = (
            ResponseFormat("json_schema", schema=schema, name="response")
            if isinstance(schema, dict)
            else ResponseFormat("json_object")
        )
    thinking = gc.get("thinkingConfig")
    if isinstance(thinking, dict):
        req.thinking = _parse_thinking(thinking)
    rest = {k: v for k, v in gc.items() if k not in _KNOWN_GENERATION}
    if rest:
        req.extra["generationConfig"] = rest  # topK, seed, penalties...: only a Gemini upstream takes them


def _parse_thinking(tc: dict[str, Any]) -> Thinking:
    """``thinkingBudget`` (tokens; 0 off, -1 the model decides) or Gemini 3's ``thinkingLevel``."""
    budget = int_field(tc.get("thinkingBudget"), "generationConfig.thinkingConfig.thinkingBudget")
    level = tc.get("thinkingLevel")
    if isinstance(level, str) and level:
        effort = level.lower()
        return Thinking(enabled=effort != "none", effort=effort)
    if budget == 0:
        return Thinking(enabled=False, effort="none")
    if budget is None or budget < 0:
        return Thinking(enabled=True)
    return Thinking(enabled=True, budget_tokens=budget, effort=effort_from_budget(budget))


# ---------------------------------------------------------------- canonical -> Gemini


def render_contents(req: CanonicalRequest, *, keep_thoughts: bool) -> list[dict[str, Any]]:
    """Canonical messages as Gemini ``contents``: user/model turns, consecutive ones of a role merged
    (results and the user's text of one turn share a user turn), other dialects' mid-conversation
    system text as user text."""
    names: dict[str, str] = {}  # call id -> function name: a Gemini result names its function
    out: list[dict[str, Any]] = []

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
        if role == "user":  # function responses first: they must follow the model's calls directly
            out[-1]["parts"].sort(key=lambda part: "functionResponse" not in part)

    for m in req.messages:
        if m.role == "assistant":
            for p in m.parts:
                if isinstance(p, ToolCallPart):
                    names[p.id] = p.name
            add("model", render_model_parts(m.parts, keep_thoughts=keep_thoughts))
            continue
        parts: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, ToolResultPart):
                parts.extend(render_result(p, names.get(p.tool_call_id, p.tool_call_id)))
            elif isinstance(p, TextPart):
                if p.text:
                    parts.append({"text": p.text})
            elif isinstance(p, ImagePart | DocumentPart):
                parts.append(render_media(p))
        add("user", parts)
    return out


def thinking_config(th: Thinking | None, *, same: bool) -> dict[str, Any] | None:
    if th is None:
        return None
    if not th.enabled:
        # Some Gemini models cannot turn thinking off (budget 0 is a 400 there): only a Gemini
        # client's own "off" is passed on.
        return {"thinkingBudget": 0} if same else None
    budget = th.budget_tokens
    if budget is None:
        budget = _EFFORT_BUDGET.get(th.effort, -1) if th.effort else -1
    return {"thinkingBudget": budget, "includeThoughts": True}


def render_request(req: CanonicalRequest, upstream_model: str, *, supports_thinking: bool = True) -> dict[str, Any]:
    """``upstream_model`` goes into the URL, not the body (``streams.providers.upstream``)."""
    same = req.dialect == DIALECT
    body: dict[str, Any] = extra_fields(req, DIALECT)
    generation: dict[str, Any] = dict(body.pop("generationConfig", None) or {})
    body["contents"] = render_contents(req, keep_thoughts=same and supports_thinking) or [
        {"role": "user", "parts": [{"text": ""}]}
    ]
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": p.text} for p in req.system if p.text]}
    if req.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}
                    for t in req.tools
                ]
            }
        ]
        tc = req.tool_choice
        if tc is not None:
            calling: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(tc.mode, "ANY")}
            if tc.mode == "tool" and tc.name:
                calling["allowedFunctionNames"] = [tc.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    if req.max_tokens is not None:
        generation["maxOutputTokens"] = req.max_tokens
    if req.temperature is not None:
        generation["temperature"] = req.temperature
    if req.top_p is not None:
        generation["topP"] = req.top_p
    if req.stop:
        generation["stopSequences"] = req.stop[:5]  # Gemini takes at most five
    rf = req.response_format
    if rf is not None and rf.type != "text":
        generation["responseMimeType"] = JSON_MIME
        if rf.type == "json_schema" and rf.schema:
            generation["responseJsonSchema"] = rf.schema
    thinking = thinking_config(req.thinking, same=same) if supports_thinking else None
    if thinking is not None:
        generation["thinkingConfig"] = thinking
    if generation:
        body["generationConfig"] = generation
    return body



def with_url_target(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """A decoded Gemini body with what its URL names (``models/{model}:streamGenerateContent``) put in
    as ``model`` and ``stream``, the fields ``parse_request`` reads them from."""
    body["model"] = model
    body["stream"] = stream
    return body
