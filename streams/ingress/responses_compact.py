"""Codex's remote compaction of a long session, answered on any provider with a summary.

Codex compacts remotely when its provider counts as OpenAI's (the built-in ``openai`` provider pointed
at the gateway, or Azure), in one of two ways (``codex-rs``: ``compact_remote.rs``,
``compact_remote_v2.rs``):

- v1, ``POST /v1/responses/compact`` with ``{model, input, instructions, tools, parallel_tool_calls,
  reasoning?, text?, prompt_cache_key?}``; Codex replaces its history with the answer's ``output``.
  Answered with the latest user messages (within ``KEPT_USER_CHARS``) and one user message holding
  the summary, in a ``response.compaction`` object (the spec's ``CompactResource``).
- v2, a streamed ``POST /v1/responses`` whose input ends in ``{"type": "compaction_trigger"}``; Codex
  wants exactly one ``compaction`` output item, keeps it and sends it back in later turns. Answered
  with a ``compaction`` item of our own whose ``encrypted_content`` is the summary (marked
  ``SUMMARY_MARK``, not encrypted); a later request carrying it gets it back as the summary message
  before parsing (``expand_own_compactions``), so every provider reads it.

OpenAI's own compaction items are opaque and only OpenAI can read them: a same-dialect OpenAI
provider gets them as they are, a translator drops them. The summary itself is an ordinary routed
request (keys, limits, failover, trace): the conversation, ``COMPACT_PROMPT`` as the last user
message, no tools, never stored; its reply is rewritten on the way out.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.events.ids import new_id
from streams.ingress.exchange import Exchange
from streams.ingress.http import Message, Send
from streams.ingress.responses_history import (
    TERMINAL_EVENTS,
    input_items,
    response_in,
    terminal_response,
    user_message,
    user_text,
)
from streams.translation import sse

# What a summarisation request keeps of the caller's body (no tools: a summary is text).
_KEPT_FIELDS = ("model", "input", "instructions", "previous_response_id", "reasoning", "prompt_cache_key",
                "metadata", "user", "stream")
RESOURCE, STREAM, RESPONSE = "resource", "stream", "response"  # how a summary is answered (v1, v2, v2 whole)
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
SUMMARY_MARK = "weave-router-summary:v1:"  # our compaction items' content (OpenAI's are opaque ciphertext)
_encode = msgspec.json.encode


# --- requests -------------------------------------------------------------------------------------------


def summary_request(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The summarisation request for a compaction body whose conversation is ``items``."""
    out = {k: body[k] for k in _KEPT_FIELDS if k in body}
    out["input"] = [*items, user_text(COMPACT_PROMPT)]
    out["store"] = False
    return out


def is_summary_request(body: dict[str, Any]) -> bool:
    items = body.get("input")
    return isinstance(items, list) and bool(items) and items[-1] == user_text(COMPACT_PROMPT)


def triggered(items: list[dict[str, Any]]) -> bool:
    """Codex's v2 compaction: the input ends in a compaction trigger."""
    return bool(items) and isinstance(items[-1], dict) and items[-1].get("type") == "compaction_trigger"


def expand_own_compactions(items: list[Any]) -> list[Any] | None:
    """``items`` with our compaction items as the summary messages they hold; None when there are none."""
    if not any(_own_summary(it) is not None for it in items):
        return None
    out: list[Any] = []
    for it in items:
        summary = _own_summary(it)
        out.append(it if summary is None else user_text(SUMMARY_PREFIX + summary))
    return out


def _own_summary(item: Any) -> str | None:
    if isinstance(item, dict) and item.get("type") == "compaction":
        content = item.get("encrypted_content")
        if isinstance(content, str) and content.startswith(SUMMARY_MARK):
            return content[len(SUMMARY_MARK):]
    return None


# --- replies ---------------------------------------------------------------------------------------------


class CompactionReply:
    """A summarisation reply held back whole and sent rewritten (``render``); a reply that carries no
    response (an error, a broken stream) passes as it came."""

    __slots__ = ("ex", "send", "render", "start", "held", "frames", "response")

    def __init__(self, ex: Exchange, send: Send, *, shape: str) -> None:
        self.ex, self.send = ex, send
        self.render = {RESOURCE: self._resource, STREAM: self._stream, RESPONSE: self._response}[shape]
        self.start: Message | None = None
        self.held = bytearray()
        self.frames = sse.SSEDecoder()
        self.response: dict[str, Any] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        chunk = message.get("body", b"")
        self.held += chunk
        if self.ex.req is not None and self.ex.req.stream:
            for event, data in self.frames.feed(chunk):
                if event in TERMINAL_EVENTS:
                    self.response = terminal_response(data)
        if message.get("more_body", False):
            return
        if not (self.ex.req is not None and self.ex.req.stream):
            self.response = response_in(bytes(self.held))
        if not isinstance(self.response, dict):
            await self.send(self.start)
            await self.send({"type": "http.response.body", "body": bytes(self.held), "more_body": False})
            return
        content_type, out = self.render(self.response)
        kept = [(k, v) for k, v in self.start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        kept += [(b"content-type", content_type), (b"content-length", str(len(out)).encode())]
        await self.send({**self.start, "headers": kept})
        await self.send({"type": "http.response.body", "body": out, "more_body": False})

    def _resource(self, response: dict[str, Any]) -> tuple[bytes, bytes]:
        """v1: the ``response.compaction`` object."""
        history = input_items(self.ex.body.get("input")) or []
        kept = _latest_user_messages(history[:-1])  # the last item is the compaction prompt
        kept.append(user_text(SUMMARY_PREFIX + summary_of(response)))
        resource = {"id": response.get("id") or "resp_" + new_id()[:24], "object": "response.compaction",
                    "created_at": response.get("created_at") or 0, "output": kept, "usage": _usage(response)}
        return b"application/json", _encode(resource)

    def _response(self, response: dict[str, Any]) -> tuple[bytes, bytes]:
        """v2 not streamed: the response whose only output item is our compaction item."""
        return b"application/json", _encode(_compacted(response))

    def _stream(self, response: dict[str, Any]) -> tuple[bytes, bytes]:
        """v2: a Responses stream whose only output item is our compaction item."""
        done = _compacted(response)
        item = done["output"][0]
        started = {k: v for k, v in done.items() if k != "usage"} | {"status": "in_progress", "output": []}
        events = [("response.created", {"response": started}),
                  ("response.output_item.added", {"output_index": 0, "item": item}),
                  ("response.output_item.done", {"output_index": 0, "item": item}),
                  ("response.completed", {"response": done})]
        out = b"".join(sse.json_frame({"type": kind, "sequence_number": i, **payload}, kind)
                       for i, (kind, payload) in enumerate(events))
        return b"text/event-stream; charset=utf-8", out


def _compacted(response: dict[str, Any]) -> dict[str, Any]:
    item = {"type": "compaction", "id": "cmp_" + new_id()[:24],
            "encrypted_content": SUMMARY_MARK + summary_of(response)}
    return {**response, "output": [item], "usage": _usage(response)}


def summary_of(response: dict[str, Any]) -> str:
    text = "".join(
        part.get("text", "")
        for item in response.get("output") or [] if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or [] if isinstance(part, dict) and part.get("type") == "output_text"
    )
    return text or "(no summary)"


def _usage(response: dict[str, Any]) -> dict[str, Any]:
    usage = response.get("usage")
    if isinstance(usage, dict):
        return usage
    return {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}


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
        kept.append(user_message(parts))
    kept.reverse()
    return kept
