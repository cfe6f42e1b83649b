"""OpenAI Responses wire format (``POST /v1/responses``), as Codex and the openai SDK use it.

Function tools are called with JSON ``arguments`` (``function_call`` items); custom tools
(``{"type": "custom", "format": {"type": "grammar" | "text"}}``, such as Codex's ``apply_patch``) with
free-text ``input`` (``custom_tool_call`` items, streamed as ``response.custom_tool_call_input.*``).
"""

from __future__ import annotations

import time
from typing import Any

from streams.providers.sim.plan import Plan, SimRequest, ToolCall, ToolSpec, json_format_schema
from streams.providers.sim.signatures import InvalidSignature, sign, valid
from streams.providers.sim.sse import Frame, chunk_tokens, named_frame, new_id, split_json
from streams.providers.sim.usage import PromptCache, Usage, estimate_tokens
from streams.providers.sim.wire_openai_chat import WireError
from streams.providers.sim.wire_openai_chat import error_body as error_body  # same shape as Chat

DIALECT = "openai_responses"
MALFORMED = (
    b"event: response.output_text.delta\n"
    b'data: {"type": "response.output_text.delta", "sequence_number": 99, "delta": "brok\n\n'
)
_SKIPPED_ROLES = ("system", "developer")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
        )
    return ""


def _is_tool_output(item: dict[str, Any]) -> bool:
    # function_call_output, custom_tool_call_output, local_shell_call_output, ...
    return str(item.get("type", "")).endswith("_output")


def _summary_text(item: dict[str, Any]) -> str:
    summary = item.get("summary")
    return "".join(str(p.get("text", "")) for p in summary if isinstance(p, dict)) if isinstance(summary, list) else ""


def _reasoning_item(plan: Plan, req: SimRequest, body: dict[str, Any], item_id: str) -> dict[str, Any]:
    """The reasoning a thinking request gets; its encrypted_content only when ``include`` asks."""
    text = plan.thinking_str
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}
    if "reasoning.encrypted_content" in (body.get("include") or []):
        item["encrypted_content"] = sign(req.model, text)
    return item


def parse(body: dict[str, Any]) -> SimRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise WireError("you must provide a model parameter")
    req = SimRequest(dialect=DIALECT, model=model, stream=bool(body.get("stream")))
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        req.last_user_text = raw_input
    elif isinstance(raw_input, list):
        if not all(isinstance(i, dict) for i in raw_input):
            raise WireError("each input item must be an object")
        for i in raw_input:
            # OpenAI decrypts the item with the model's key; another model's item does not verify.
            sealed = i.get("encrypted_content") if i.get("type") == "reasoning" else None
            if sealed is not None and not valid(model, _summary_text(i), sealed):
                raise InvalidSignature(f"The encrypted content for item {i.get('id')} could not be verified.")
        items = [
            i
            for i in raw_input
            if i.get("type") != "reasoning" and not (i.get("role") in _SKIPPED_ROLES and not _is_tool_output(i))
        ]
        results: list[str] = []
        for item in reversed(items):
            if not _is_tool_output(item):
                break
            output = item.get("output")
            results.append(output if isinstance(output, str) else _text_of(output))
        req.after_tool_result = bool(results)
        req.tool_result_text = "\n".join(reversed(results))
        req.last_user_text = next((_text_of(i.get("content")) for i in reversed(items) if i.get("role") == "user"), "")
    elif raw_input is not None:
        raise WireError("'input' must be a string or an array of input items")
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or not tool.get("name"):
            continue
        if tool.get("type") == "function":
            req.tools.append(ToolSpec(str(tool["name"]), tool.get("parameters") or {}))
        elif tool.get("type") == "custom":  # freeform text input, optionally constrained by a grammar
            req.tools.append(ToolSpec(str(tool["name"]), {}, custom=True))
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        req.tool_choice = choice
    elif isinstance(choice, dict) and choice.get("type") in ("function", "custom") and choice.get("name"):
        req.tool_choice = "tool:" + str(choice["name"])
    req.parallel_allowed = body.get("parallel_tool_calls", True) is not False
    limit = body.get("max_output_tokens")
    req.max_tokens = int(limit) if isinstance(limit, int) and limit > 0 else None
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    req.thinking = isinstance(effort, str) and effort != "none"
    text = body.get("text")
    req.json_schema = json_format_schema(text.get("format") if isinstance(text, dict) else None)
    return req


def usage(body: dict[str, Any], raw: bytes, plan: Plan, cache: PromptCache) -> Usage:
    input_tokens = estimate_tokens(len(raw))
    cached = cache.openai(str(body.get("model")), body.get("prompt_cache_key"), input_tokens, raw)
    return Usage(input_tokens, plan.output_tokens, cache_read=cached, reasoning=len(plan.thinking))


def usage_json(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _response(
    req: SimRequest,
    body: dict[str, Any],
    rid: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    u: Usage | None,
) -> dict[str, Any]:
    # Spec-valid as the official OpenAPI spec types it: no ``usage``/``user`` null (usage is left out
    # until known), function tools echoed with their defaults filled in.
    obj: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_allowed,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echo_tool(t) for t in body.get("tools") or []],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }
    if u is not None:
        obj["usage"] = usage_json(u)
    return obj


def _echo_tool(tool: Any) -> Any:
    """A tool as the response echoes it: a function tool with ``strict`` (the Responses API's default:
    true) and ``parameters`` always present."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {**tool, "strict": tool.get("strict", True), "parameters": tool.get("parameters")}
    return tool


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str, custom: bool) -> dict[str, Any]:
    if custom:
        return {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name,
                "input": arguments}  # fmt: skip
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _item_id(call: ToolCall) -> str:
    return ("ctc_" if call.custom else "fc_") + call.id


def _final_status(plan: Plan) -> str:
    return "incomplete" if plan.stop == "max_tokens" else "completed"


def render(plan: Plan, req: SimRequest, u: Usage, body: dict[str, Any]) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if plan.thinking:
        output.append(_reasoning_item(plan, req, body, new_id("rs_")))
    if plan.text or not plan.tool_calls:
        output.append(_message_item(new_id("msg_"), plan.text_str, "completed"))
    for call in plan.tool_calls:
        output.append(
            _call_item(_item_id(call), "call_" + call.id, call.name, call.arguments, "completed", call.custom)
        )
    return _response(req, body, new_id("resp_"), int(time.time()), _final_status(plan), output, u)


def stream(plan: Plan, req: SimRequest, u: Usage, body: dict[str, Any], chunk_size: int) -> list[Frame]:
    rid, created = new_id("resp_"), int(time.time())
    frames: list[Frame] = []

    def emit(event: str, payload: dict[str, Any], tokens: int = 0) -> None:
        # sequence_number counts every event of the stream from 0.
        frames.append(named_frame(event, {"type": event, "sequence_number": len(frames), **payload}, tokens))

    emit("response.created", {"response": _response(req, body, rid, created, "in_progress", [], None)})
    emit("response.in_progress", {"response": _response(req, body, rid, created, "in_progress", [], None)})
    output: list[dict[str, Any]] = []
    if plan.thinking:
        index, item_id = len(output), new_id("rs_")
        emit("response.output_item.added", {"output_index": index, "item": {"id": item_id, "type": "reasoning", "summary": []}})
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        emit("response.reasoning_summary_part.added", {**where, "part": {"type": "summary_text", "text": ""}})
        for piece, n in chunk_tokens(plan.thinking, chunk_size):
            emit("response.reasoning_summary_text.delta", {**where, "delta": piece}, n)
        emit("response.reasoning_summary_text.done", {**where, "text": plan.thinking_str})
        emit("response.reasoning_summary_part.done", {**where, "part": {"type": "summary_text", "text": plan.thinking_str}})
        done = _reasoning_item(plan, req, body, item_id)
        emit("response.output_item.done", {"output_index": index, "item": done})
        output.append(done)
    if plan.text or not plan.tool_calls:
        index, item_id, text = len(output), new_id("msg_"), plan.text_str
        emit("response.output_item.added", {"output_index": index, "item": _message_item(item_id, "", "in_progress")})
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        emit(
            "response.content_part.added",
            {**where, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
        )
        for piece, n in chunk_tokens(plan.text, chunk_size):
            emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []}, n)
        emit("response.output_text.done", {**where, "text": text, "logprobs": []})
        emit(
            "response.content_part.done",
            {**where, "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}},
        )
        done = _message_item(item_id, text, "completed")
        emit("response.output_item.done", {"output_index": index, "item": done})
        output.append(done)
    for call in plan.tool_calls:
        index, item_id, call_id = len(output), _item_id(call), "call_" + call.id
        emit(
            "response.output_item.added",
            {"output_index": index, "item": _call_item(item_id, call_id, call.name, "", "in_progress", call.custom)},
        )
        kind = "custom_tool_call_input" if call.custom else "function_call_arguments"
        for piece in split_json(call.arguments):
            emit(
                f"response.{kind}.delta",
                {"item_id": item_id, "output_index": index, "delta": piece},
                max(1, len(piece) // 4),
            )
        if call.custom:
            emit(f"response.{kind}.done", {"item_id": item_id, "output_index": index, "input": call.arguments})
        else:
            emit(
                f"response.{kind}.done",
                {"item_id": item_id, "output_index": index, "name": call.name, "arguments": call.arguments},
            )
        done = _call_item(item_id, call_id, call.name, call.arguments, "completed", call.custom)
        emit("response.output_item.done", {"output_index": index, "item": done})
        output.append(done)
    status = _final_status(plan)
    final_event = "response.completed" if status == "completed" else "response.incomplete"
    emit(final_event, {"response": _response(req, body, rid, created, status, output, u)})
    return frames
