"""``POST /v1/responses/compact``: Codex's remote compaction of a long session, on any provider.

Codex calls it (``codex-rs/codex-api``, ``CompactClient``) with ``{model, input, instructions, tools,
parallel_tool_calls, reasoning?, text?, prompt_cache_key?}`` when its provider counts as OpenAI's (the
built-in ``openai`` provider pointed at the gateway, or Azure), and replaces its history with the
``output`` items of the answer. OpenAI answers the user messages and an opaque ``compaction`` item
that only OpenAI can read back; the gateway cannot make one, and a provider of another dialect could
not read it. So the compaction here is a summary the routed model writes, returned as plain items
every provider reads: the most recent user messages (within ``KEPT_USER_CHARS``) and one user message
holding the summary, in a ``response.compaction`` object (the spec's ``CompactResource``).

It is a Responses request like any other (keys, limits, routing, failover, trace): the body is
turned into a non-streamed summarisation request without tools and never stored; the reply, when it is
a response, is turned into the compaction object on its way out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.ingress.exchange import Exchange
from streams.ingress.http import Message, Scope, Send
from streams.ingress.openai_responses import OpenAIResponsesCore, input_items

# What the summarisation request keeps of Codex's compaction body (no tools: a summary is text).
_KEPT_FIELDS = ("model", "input", "instructions", "previous_response_id", "reasoning", "prompt_cache_key",
                "metadata", "user")
# Codex keeps ~20k tokens of the latest user messages after its own compaction: as many characters x4.
KEPT_USER_CHARS = 80_000
COMPACT_PROMPT = (
    "Context checkpoint: the conversation above is about to be replaced by a summary you write now, "
    "for yourself to continue the same work later. Write it as a handover: the goal and the user's "
    "requirements, what has been done (files changed, commands run and their results), decisions and "
    "why, what is left to do, and anything that must not be forgotten. Do not call tools; answer with "
    "the summary only."
)
SUMMARY_PREFIX = "Summary of the conversation so far (written when its earlier turns were compacted):\n\n"
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class ResponsesCompactCore(OpenAIResponsesCore):
    def request_body(self, scope: Scope, body: dict[str, Any]) -> dict[str, Any]:
        out = {k: body[k] for k in _KEPT_FIELDS if k in body}
        items = input_items(body.get("input"))
        if items is not None:  # else the parser names the bad input
            out["input"] = [*items, {"type": "message", "role": "user", "content": COMPACT_PROMPT}]
        out["store"] = False
        out["stream"] = False
        return out

    def watch_reply(self, ex: Exchange, send: Send) -> Send:
        return CompactionReply(ex, send)


class CompactionReply:
    """A successful reply held back whole and sent as the compaction object; errors pass as they are."""

    __slots__ = ("ex", "send", "start", "body")

    def __init__(self, ex: Exchange, send: Send) -> None:
        self.ex, self.send = ex, send
        self.start: Message | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        out = compaction_of(self.ex.body.get("input"), bytes(self.body))
        headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(out)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": out, "more_body": False})


def compaction_of(sent_input: Any, reply: bytes) -> bytes:
    """The ``response.compaction`` object for the summarisation request's input and its response."""
    try:
        response = _decode(reply)
    except msgspec.DecodeError:
        response = {}
    if not isinstance(response, dict):
        response = {}
    summary = "".join(
        part.get("text", "")
        for item in response.get("output") or [] if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or [] if isinstance(part, dict) and part.get("type") == "output_text"
    )
    history = input_items(sent_input) or []
    kept = _latest_user_messages(history[:-1])  # the last item is the compaction prompt
    kept.append(_user_message([{"type": "input_text", "text": SUMMARY_PREFIX + (summary or "(no summary)")}]))
    usage = response.get("usage") or {
        "input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0,
    }
    return _encode({
        "id": response.get("id") or "resp_compaction",
        "object": "response.compaction",
        "created_at": response.get("created_at") or 0,
        "output": kept,
        "usage": usage,
    })


def _latest_user_messages(items: list[Any]) -> list[dict[str, Any]]:
    """The user messages of ``items``, the most recent ones within ``KEPT_USER_CHARS``, in order."""
    kept: list[dict[str, Any]] = []
    budget = KEPT_USER_CHARS
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            continue
        size = sum(len(p.get("text", "")) for p in parts if isinstance(p, dict))
        if size > budget:
            break
        budget -= size
        kept.append(_user_message(parts))
    kept.reverse()
    return kept


def _user_message(parts: list[Any]) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": parts}
