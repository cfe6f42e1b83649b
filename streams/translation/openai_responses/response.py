"""OpenAI Responses responses and errors: an upstream's response object <-> canonical."""

from __future__ import annotations

import time
from typing import Any

from streams.translation.canonical import (
    CanonicalResponse,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    Usage,
)
from streams.translation.common import new_id, render_openai_error, response_list, seal_signature
from streams.translation.custom_tools import unwrap_input, wrap_input
from streams.translation.openai_responses.usage import parse_usage, render_usage

render_error = render_openai_error  # the same error body as Chat Completions


def stop_of(status: str | None, incomplete: Any, parts: list[Part]) -> StopReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "content_filter" if reason == "content_filter" else "max_tokens"
    if status == "failed":
        return "error"
    return "tool_use" if any(isinstance(p, ToolCallPart) for p in parts) else "end_turn"


def parse_response(body: dict[str, Any]) -> CanonicalResponse:
    output = response_list(body, "output")
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
        elif kind == "custom_tool_call":
            parts.append(
                ToolCallPart(
                    it.get("call_id") or new_id("call_"), it.get("name") or "", wrap_input(it.get("input") or "")
                )
            )
        elif kind == "reasoning":
            summary = "\n\n".join(s.get("text") or "" for s in it.get("summary") or [])
            parts.append(ThinkingPart(summary, signature=it.get("encrypted_content") or None, id=it.get("id")))
    return CanonicalResponse(
        id=body.get("id") or new_id("resp_"),
        model=body.get("model") or "",
        parts=parts,
        stop_reason=stop_of(body.get("status"), body.get("incomplete_details"), parts),
        usage=parse_usage(body.get("usage")),
    )


def response_object(
    rid: str, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None, created: int
) -> dict[str, Any]:
    obj: dict[str, Any] = {
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
    }
    # Usage is absent until known (response.created, in_progress, failed): the spec has no null usage.
    if usage is not None:
        obj["usage"] = render_usage(usage)
    return obj


def status_for(stop: StopReason) -> tuple[str, dict[str, Any] | None]:
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def render_response(
    resp: CanonicalResponse, *, model: str, keep_signatures: bool = True, client_tools: dict[str, Tool] | None = None
) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    for p in resp.parts:
        if isinstance(p, TextPart):
            output.append(message_item(new_id("msg_"), p.text, "completed"))
        elif isinstance(p, ToolCallPart):
            output.append(call_item(p.id, p.name, p.arguments, "completed", client_tools))
        elif isinstance(p, ThinkingPart) and keep_signatures and p.signature:
            # sealed with its maker: a store:false client sends it back, and only that model gets it
            sealed = seal_signature(p.signature, resp.model, p.id)
            output.append(reasoning_item(new_id("rs_"), p.text, sealed))
    rid = resp.id if resp.id.startswith("resp_") else new_id("resp_")
    status, incomplete = status_for(resp.stop_reason)
    obj = response_object(rid, model, status, output, resp.usage, int(time.time()))
    obj["incomplete_details"] = incomplete
    return obj


def message_item(iid: str, text: str, status: str) -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {"type": "message", "id": iid, "status": status, "role": "assistant", "content": content}


def call_item(
    call_id: str, name: str, args: str, status: str, client_tools: dict[str, Tool] | None, iid: str | None = None
) -> dict[str, Any]:
    """A ``function_call`` item, or a ``custom_tool_call`` with the raw ``input`` for a custom tool."""
    tool = client_tools.get(name) if client_tools else None
    item: dict[str, Any]
    if tool is not None and tool.custom is not None:
        text = unwrap_input(args) if args else ""
        item = {"type": "custom_tool_call", "id": iid or new_id("ctc_"), "call_id": call_id, "name": name}
        item.update(input=text, status=status)
    else:
        item = {"type": "function_call", "id": iid or new_id("fc_"), "call_id": call_id, "name": name}
        item.update(arguments=args, status=status)
    if tool is not None and tool.kind.startswith("namespace:"):
        item["namespace"] = tool.kind[10:]
    return item


def reasoning_item(iid: str, text: str, signature: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": iid,
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if signature:
        item["encrypted_content"] = signature
    return item
