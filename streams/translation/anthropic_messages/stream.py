"""Anthropic Messages streams: message/content_block events <-> canonical stream events."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.translation import sse
from streams.translation.anthropic_messages.blocks import tool_id
from streams.translation.anthropic_messages.response import (
    STATUS_OF_TYPE,
    STOP_MAP,
    STOP_OUT,
    message_id,
    render_error,
)
from streams.translation.anthropic_messages.usage import parse_usage, render_usage, update_usage
from streams.translation.canonical import (
    PartEnd,
    StopReason,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    Tool,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from streams.translation.common import decode_event, new_id, seal_signature, stream_cut

_encode = msgspec.json.encode


class StreamParser:
    """Anthropic SSE events -> canonical events; block indices are kept as canonical indices."""

    __slots__ = ("_ended", "_usage", "_stop", "_stop_seq", "_kinds")

    def __init__(self) -> None:
        self._ended = False
        self._usage = Usage()
        self._stop: StopReason | None = None
        self._stop_seq: str | None = None
        self._kinds: dict[int, str] = {}

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        ev = decode_event(data)
        if ev is None:
            return []
        kind = ev.get("type") or event
        if kind == "content_block_delta":
            idx = ev.get("index", 0)
            d = ev.get("delta") or {}
            dk = d.get("type")
            if dk == "text_delta":
                return [TextDelta(idx, d.get("text") or "")]
            if dk == "input_json_delta":
                pj = d.get("partial_json") or ""
                return [ToolCallDelta(idx, pj)] if pj and self._kinds.get(idx) == "tool_use" else []
            if dk == "thinking_delta":
                return [ThinkingDelta(idx, d.get("thinking") or "")]
            if dk == "signature_delta":
                return [ThinkingDelta(idx, "", signature=d.get("signature"))]
            return []
        if kind == "content_block_start":
            idx = ev.get("index", 0)
            b = ev.get("content_block") or {}
            bk = b.get("type")
            self._kinds[idx] = bk or ""
            if bk == "text":
                return [TextDelta(idx, b["text"])] if b.get("text") else []
            if bk == "tool_use":
                out: list[StreamEvent] = [ToolCallStart(idx, b.get("id") or new_id("toolu_"), b.get("name") or "")]
                if b.get("input"):
                    out.append(ToolCallDelta(idx, _encode(b["input"]).decode()))
                return out
            if bk == "thinking":
                return [ThinkingDelta(idx, b.get("thinking") or "", signature=b.get("signature") or None)]
            if bk == "redacted_thinking":
                return [ThinkingDelta(idx, "", signature=b.get("data"), redacted=True)]
            return []  # server tool blocks run upstream; other dialects have no place for them
        if kind == "content_block_stop":
            idx = ev.get("index", 0)
            return (
                [PartEnd(idx)] if self._kinds.get(idx) in ("text", "tool_use", "thinking", "redacted_thinking") else []
            )
        if kind == "message_start":
            msg = ev.get("message") or {}
            self._usage = parse_usage(msg.get("usage"))
            return [StreamStart(id=msg.get("id") or new_id("msg_"), model=msg.get("model") or "",
                                usage=self._usage if msg.get("usage") else None)]
        if kind == "message_delta":
            d = ev.get("delta") or {}
            if d.get("stop_reason"):
                self._stop = STOP_MAP.get(d["stop_reason"], "end_turn")
                self._stop_seq = d.get("stop_sequence")
            update_usage(ev.get("usage"), self._usage)
            return []
        if kind == "message_stop":
            self._ended = True
            return [StreamEnd(stop_reason=self._stop or "end_turn", usage=self._usage, stop_sequence=self._stop_seq)]
        if kind == "error":
            self._ended = True
            err = ev.get("error") or {}
            etype = err.get("type") or "api_error"
            return [
                StreamError(
                    err.get("message") or "upstream error", status=STATUS_OF_TYPE.get(etype, 500), error_type=etype
                )
            ]
        return []  # ping and future event types

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        if self._stop is not None:  # message_delta arrived, only message_stop is missing
            return [StreamEnd(stop_reason=self._stop, usage=self._usage, stop_sequence=self._stop_seq)]
        return [stream_cut()]


class StreamWriter:
    """Canonical events -> the Anthropic event sequence (blocks strictly one after another)."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = True,
        client_tools: dict[str, Tool] | None = None,
        input_tokens: int = 0,
    ) -> None:
        """``input_tokens``: the prompt's size as estimated before the provider says (message_start
        carries it, as Anthropic's API does; message_delta then gives the provider's count)."""
        self.model = model
        self.keep_signatures = keep_signatures
        self._origin = ""  # the model the upstream says answered (StreamStart)
        self._pending: dict[int, str] = {}  # thinking text waiting for its signature
        self.input_tokens = input_tokens
        self._started = False
        self._done = False
        self._blocks: dict[int, int] = {}  # canonical index -> block index
        self._open: int | None = None  # canonical index of the open block
        self._dropped: set[int] = set()
        self.usage: Usage | None = None
        self.stop_reason: StopReason | None = None

    def _start(self, rid: str | None = None, usage: Usage | None = None) -> bytes:
        self._started = True
        if usage is not None and usage.input_tokens > 0:
            start_usage = {**render_usage(usage), "output_tokens": 0}
        else:
            start_usage = {"input_tokens": self.input_tokens, "output_tokens": 0}
        msg: dict[str, Any] = {
            "id": message_id(rid or ""),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return sse.json_frame({"type": "message_start", "message": msg}, "message_start")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        n = self._blocks[self._open]
        self._open = None
        return sse.json_frame({"type": "content_block_stop", "index": n}, "content_block_stop")

    def _open_block(self, idx: int, block: dict[str, Any]) -> bytes:
        out = self._close()
        n = self._blocks[idx] = len(self._blocks)
        self._open = idx
        return out + sse.json_frame(
            {"type": "content_block_start", "index": n, "content_block": block}, "content_block_start"
        )

    def _delta(self, idx: int, delta: dict[str, Any]) -> bytes:
        return sse.json_frame(
            {"type": "content_block_delta", "index": self._blocks[idx], "delta": delta}, "content_block_delta"
        )

    def write(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, StreamStart):
            self._origin = ev.model or self._origin
            return b"" if self._started else self._start(ev.id, ev.usage)
        if isinstance(ev, StreamError):
            self._done = True
            self.stop_reason = "error"
            return sse.json_frame(render_error(ev.status, ev.message, error_type=ev.error_type), "error")
        head = b"" if self._started else self._start()
        if isinstance(ev, TextDelta):
            if ev.index not in self._blocks:
                head += self._open_block(ev.index, {"type": "text", "text": ""})
            return head + self._delta(ev.index, {"type": "text_delta", "text": ev.text})
        if isinstance(ev, ToolCallDelta):
            if ev.index not in self._blocks:
                return head
            return head + self._delta(ev.index, {"type": "input_json_delta", "partial_json": ev.arguments})
        if isinstance(ev, ToolCallStart):
            block = {"type": "tool_use", "id": tool_id(ev.id), "name": ev.name, "input": {}}
            return head + self._open_block(ev.index, block)
        if isinstance(ev, ThinkingDelta):
            return head + self._thinking(ev)
        if isinstance(ev, PartEnd):
            if self._pending.pop(ev.index, None) is not None:
                self._dropped.add(ev.index)  # thinking that never got a signature
            return head + (self._close() if ev.index == self._open else b"")
        if isinstance(ev, StreamEnd):
            self._done = True
            self.usage, self.stop_reason = ev.usage, ev.stop_reason
            delta = {"stop_reason": STOP_OUT.get(ev.stop_reason, ev.stop_reason), "stop_sequence": ev.stop_sequence}
            end = {"type": "message_delta", "delta": delta, "usage": render_usage(ev.usage)}
            return (
                head
                + self._close()
                + sse.json_frame(end, "message_delta")
                + sse.json_frame({"type": "message_stop"}, "message_stop")
            )
        return head

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        # Another provider's reasoning goes to the client only signed (sealed with its maker, so it
        # goes back to that model alone): Claude Code sends thinking blocks back, and an unsigned one
        # would be rejected. The text waits for the signature, which comes at the block's end.
        if not self.keep_signatures or ev.index in self._dropped:
            self._dropped.add(ev.index)
            return b""
        origin = self._origin or self.model
        if ev.index not in self._blocks:
            if ev.redacted:
                data = seal_signature(ev.signature, origin, ev.id) if ev.signature else ""
                return self._open_block(ev.index, {"type": "redacted_thinking", "data": data})
            if not ev.signature:
                self._pending[ev.index] = self._pending.get(ev.index, "") + ev.text
                return b""
            text = self._pending.pop(ev.index, "") + ev.text
            out = self._open_block(ev.index, {"type": "thinking", "thinking": "", "signature": ""})
        else:
            text, out = ev.text, b""
        if text:
            out += self._delta(ev.index, {"type": "thinking_delta", "thinking": text})
        if ev.signature and not ev.redacted:
            out += self._delta(ev.index, {"type": "signature_delta", "signature": seal_signature(ev.signature, origin, ev.id)})
        return out
