"""Gemini streams (``:streamGenerateContent?alt=sse``): ``data:`` chunks <-> canonical stream events.

Each chunk is a whole ``GenerateContentResponse`` holding the parts generated since the previous one;
function calls arrive whole; there is no end marker: the last chunk carries the ``finishReason`` and
the complete ``usageMetadata``.
"""

from __future__ import annotations

from typing import Any

from streams.translation import sse
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
from streams.translation.common import decode_event, new_id, stream_cut
from streams.translation.gemini.parts import arguments_object, call_arguments, given_call_id
from streams.translation.gemini.response import STOP_TO_FINISH, render_error, response_id, stop_reason
from streams.translation.gemini.usage import parse_usage, render_usage


class StreamParser:
    """Gemini chunks -> canonical events; consecutive text (or thought) chunks extend one part."""

    __slots__ = ("_started", "_ended", "_next", "_open", "_open_kind", "_saw_call", "_usage")

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._next = 0
        self._open: int | None = None  # canonical index of the text or thought part being extended
        self._open_kind = ""
        self._saw_call = False
        self._usage = Usage()

    def _begin(self, kind: str, out: list[StreamEvent]) -> int:
        self._close_open(out)
        idx = self._next
        self._next += 1
        self._open, self._open_kind = idx, kind
        return idx

    def _close_open(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(PartEnd(self._open))
            self._open = None

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        chunk = decode_event(data)
        if chunk is None:
            return []
        err = chunk.get("error")
        if isinstance(err, dict):
            self._ended = True
            code = err.get("code")
            return [StreamError(str(err.get("message") or "upstream error"),
                                status=code if isinstance(code, int) else 500)]  # fmt: skip
        out: list[StreamEvent] = []
        if chunk.get("usageMetadata") is not None:
            self._usage = parse_usage(chunk["usageMetadata"])  # running totals; the last chunk's are final
        if not self._started:
            self._started = True
            start_usage = self._usage if chunk.get("usageMetadata") is not None else None
            out.append(StreamStart(id=chunk.get("responseId") or new_id(""), model=chunk.get("modelVersion") or "",
                                   usage=start_usage))
        candidates = chunk.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(first, dict):
            feedback = chunk.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):  # the prompt itself was blocked
                self._ended = True
                out.append(StreamEnd(stop_reason="content_filter", usage=self._usage))
            return out
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for p in parts if isinstance(parts, list) else ():
            if isinstance(p, dict):
                self._part(p, out)
        finish = first.get("finishReason")
        if finish:
            self._ended = True
            self._close_open(out)
            out.append(StreamEnd(stop_reason=stop_reason(finish, self._saw_call), usage=self._usage))
        return out

    def _part(self, p: dict[str, Any], out: list[StreamEvent]) -> None:
        fn = p.get("functionCall")
        if isinstance(fn, dict):
            idx = self._begin("call", out)
            cid = given_call_id(fn) or new_id("call_")
            self._saw_call = True
            out.append(ToolCallStart(idx, cid, str(fn.get("name") or "")))
            out.append(ToolCallDelta(idx, call_arguments(fn.get("args"))))
            self._close_open(out)
            return
        text = p.get("text")
        if not isinstance(text, str) or not text:
            return
        kind = "thought" if p.get("thought") is True else "text"
        idx = self._open if self._open is not None and self._open_kind == kind else self._begin(kind, out)
        out.append(ThinkingDelta(idx, text) if kind == "thought" else TextDelta(idx, text))

    def close(self) -> list[StreamEvent]:
        """The upstream body ended; without a finishReason the stream was cut."""
        if self._ended:
            return []
        self._ended = True
        return [stream_cut()]


class StreamWriter:
    """Canonical events -> Gemini SSE chunks; a function call is sent whole once its arguments are in."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = False,  # reasoning reaching a Gemini client here came from another provider
        client_tools: dict[str, Tool] | None = None,
    ) -> None:
        self.model = model
        self._id = new_id("")[:22]
        self._done = False
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # canonical index -> (id, name, argument pieces)
        self.usage: Usage | None = None
        self.stop_reason: StopReason | None = None

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None, usage: Usage | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        chunk: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            chunk["usageMetadata"] = render_usage(usage)
        chunk["modelVersion"] = self.model
        chunk["responseId"] = self._id
        return sse.json_frame(chunk)

    def _call_part(self, idx: int) -> dict[str, Any]:
        cid, name, pieces = self._calls.pop(idx)
        return {"functionCall": {"id": cid, "name": name, "args": arguments_object("".join(pieces))}}

    def write(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        if isinstance(ev, StreamStart):
            self._id = response_id(ev.id)
            return b""
        if isinstance(ev, TextDelta):
            return self._chunk([{"text": ev.text}]) if ev.text else b""
        if isinstance(ev, ThinkingDelta):
            return self._chunk([{"text": ev.text, "thought": True}]) if ev.text else b""
        if isinstance(ev, ToolCallStart):
            self._calls[ev.index] = (ev.id, ev.name, [])
            return b""
        if isinstance(ev, ToolCallDelta):
            call = self._calls.get(ev.index)
            if call is not None:
                call[2].append(ev.arguments)
            return b""
        if isinstance(ev, PartEnd):
            return self._chunk([self._call_part(ev.index)]) if ev.index in self._calls else b""
        if isinstance(ev, StreamEnd):
            self._done = True
            self.usage, self.stop_reason = ev.usage, ev.stop_reason
            pending = [self._call_part(i) for i in sorted(self._calls)]
            return self._chunk(pending, STOP_TO_FINISH[ev.stop_reason], ev.usage)
        if isinstance(ev, StreamError):
            self._done = True
            self.stop_reason = "error"
            return sse.json_frame(render_error(ev.status, ev.message))
        return b""
