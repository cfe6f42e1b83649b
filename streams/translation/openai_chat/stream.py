"""OpenAI Chat Completions streams: chat.completion.chunk events <-> canonical stream events."""

from __future__ import annotations

import time
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
from streams.translation.openai_chat.response import FINISH_TO_STOP, STOP_TO_FINISH, render_error
from streams.translation.openai_chat.usage import parse_usage, render_usage


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
        chunk = decode_event(data)
        if chunk is None:
            return []  # keep-alive garbage from some servers
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
            return [stream_cut()]
        return self._finish()


class StreamWriter:
    """Canonical events -> chat.completion.chunk frames for an OpenAI chat client."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = False,  # Chat has no signed reasoning, no tool namespaces
        client_tools: dict[str, Tool] | None = None,
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
