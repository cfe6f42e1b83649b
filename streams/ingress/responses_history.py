"""A Responses conversation as items: what a request's ``input`` holds, where a reply carries its
response object, and what the response's ``output`` becomes when the next turn sends it back
(``previous_response_id``, the store, compaction)."""

from __future__ import annotations

from typing import Any

import msgspec

TERMINAL_EVENTS = ("response.completed", "response.incomplete")  # the stream events with the whole response
_decode = msgspec.json.decode


def input_items(value: Any) -> list[dict[str, Any]] | None:
    """A request's ``input`` as a list of items (a string is one user message); None when it is neither."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return value if isinstance(value, list) else None


def replayable(output: Any) -> list[dict[str, Any]]:
    """A response's output items as the next request's input items. Item ids and statuses go (a
    provider that did not store them rejects ids it does not know); reasoning without its encrypted
    content cannot be replayed anywhere and is dropped."""
    out: list[dict[str, Any]] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "reasoning":
            if item.get("encrypted_content"):
                out.append({k: item[k] for k in ("type", "id", "summary", "encrypted_content") if k in item})
        elif kind in ("message", "function_call", "custom_tool_call"):
            out.append({k: v for k, v in item.items() if k not in ("id", "status")})
        else:
            out.append(item)  # hosted tool calls: only a same-dialect provider reads them
    return out


def user_message(parts: list[Any]) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": parts}


def user_text(text: str) -> dict[str, Any]:
    return user_message([{"type": "input_text", "text": text}])


def response_in(body: bytes) -> dict[str, Any] | None:
    """The response object a whole reply is, if it is one."""
    try:
        obj = _decode(body)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) and obj.get("object") == "response" else None


def terminal_response(data: str) -> dict[str, Any] | None:
    """The response a stream's ``response.completed`` / ``response.incomplete`` event carries, if it is one."""
    try:
        obj = _decode(data)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, dict) and obj.get("type") in TERMINAL_EVENTS and isinstance(obj.get("response"), dict):
        response: dict[str, Any] = obj["response"]
        return response
    return None
