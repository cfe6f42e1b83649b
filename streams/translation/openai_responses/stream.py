"""OpenAI Responses streams: response.* events <-> canonical stream events."""

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
from streams.translation.common import decode_event, new_id, openai_error_type, seal_signature, stream_cut
from streams.translation.custom_tools import INPUT_CLOSE, INPUT_OPEN, InputStream, input_fragment, unwrap_input
from streams.translation.openai_responses.response import (
    call_item,
    message_item,
    reasoning_item,
    response_object,
    status_for,
    stop_of,
)
from streams.translation.openai_responses.usage import parse_usage


class StreamParser:
    """Responses events -> canonical events. Each message content part, function call and reasoning
    item becomes one canonical part, numbered in order of appearance."""

    __slots__ = ("_ended", "_next", "_parts", "_args", "_custom", "_summary", "_saw_tool")

    def __init__(self) -> None:
        self._ended = False
        self._next = 0
        self._parts: dict[tuple[int, int], int] = {}  # (output_index, content_index or -1) -> canonical
        self._args: dict[int, int] = {}  # canonical index of a call -> argument chars relayed
        self._custom: dict[int, int] = {}  # canonical index of a custom call -> input chars relayed
        self._summary: dict[int, int] = {}  # canonical index of reasoning -> last summary_index
        self._saw_tool = False

    def _idx(self, key: tuple[int, int]) -> int:
        idx = self._parts.get(key)
        if idx is None:
            idx = self._parts[key] = self._next
            self._next += 1
        return idx

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._ended:
            return []
        ev = decode_event(data)
        if ev is None:
            return []
        kind = ev.get("type") or event
        oi = ev.get("output_index", 0)
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            return [TextDelta(self._idx((oi, ev.get("content_index", 0))), ev.get("delta") or "")]
        if kind == "response.function_call_arguments.delta":
            idx = self._idx((oi, -1))
            delta = ev.get("delta") or ""
            self._args[idx] = self._args.get(idx, 0) + len(delta)
            return [ToolCallDelta(idx, delta)] if delta else []
        if kind == "response.custom_tool_call_input.delta":
            idx = self._idx((oi, -1))
            delta = ev.get("delta") or ""
            self._custom[idx] = self._custom.get(idx, 0) + len(delta)
            return [ToolCallDelta(idx, input_fragment(delta))] if delta else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            idx = self._idx((oi, -1))
            out: list[StreamEvent] = []
            si = ev.get("summary_index", 0)
            prev = self._summary.get(idx)
            if prev is not None and si != prev:
                out.append(ThinkingDelta(idx, "\n\n"))
            self._summary[idx] = si
            out.append(ThinkingDelta(idx, ev.get("delta") or ""))
            return out
        if kind == "response.output_item.added":
            item = ev.get("item") or {}
            if item.get("type") == "function_call":
                self._saw_tool = True
                idx = self._idx((oi, -1))
                self._args[idx] = len(item.get("arguments") or "")
                out = [ToolCallStart(idx, item.get("call_id") or new_id("call_"), item.get("name") or "")]
                if item.get("arguments"):
                    out.append(ToolCallDelta(idx, item["arguments"]))
                return out
            if item.get("type") == "custom_tool_call":
                return self._custom_start(self._idx((oi, -1)), item)
            if item.get("type") == "reasoning":
                return [ThinkingDelta(self._idx((oi, -1)), "")]
            return []
        if kind == "response.content_part.done":
            key = (oi, ev.get("content_index", 0))
            return [PartEnd(self._parts[key])] if key in self._parts else []
        if kind == "response.output_item.done":
            return self._item_done(oi, ev.get("item") or {})
        if kind == "response.created":
            r = ev.get("response") or {}
            return [StreamStart(id=r.get("id") or new_id("resp_"), model=r.get("model") or "")]
        if kind in ("response.completed", "response.incomplete"):
            self._ended = True
            r = ev.get("response") or {}
            stop = stop_of(r.get("status"), r.get("incomplete_details"), [])
            if stop == "end_turn" and self._saw_tool:
                stop = "tool_use"
            return [StreamEnd(stop_reason=stop, usage=parse_usage(r.get("usage")))]
        if kind == "response.failed":
            self._ended = True
            err = (ev.get("response") or {}).get("error") or {}
            return [StreamError(err.get("message") or "upstream response failed", status=500)]
        if kind == "error":
            self._ended = True
            return [
                StreamError(ev.get("message") or "upstream error", status=500, error_type=ev.get("code") or "api_error")
            ]
        return []

    def _custom_start(self, idx: int, item: dict[str, Any]) -> list[StreamEvent]:
        """A custom call as canonical: its input streamed as the JSON arguments of its function form."""
        self._saw_tool = True
        text = item.get("input") or ""
        self._custom[idx] = len(text)
        call_id = item.get("call_id") or new_id("call_")
        return [
            ToolCallStart(idx, call_id, item.get("name") or ""),
            ToolCallDelta(idx, INPUT_OPEN + input_fragment(text)),
        ]

    def _item_done(self, oi: int, item: dict[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        out: list[StreamEvent] = []
        if kind == "custom_tool_call":
            idx = self._idx((oi, -1))
            if idx not in self._custom:
                out.extend(self._custom_start(idx, {**item, "input": ""}))
            text = item.get("input") or ""
            if len(text) > self._custom[idx]:
                out.append(ToolCallDelta(idx, input_fragment(text[self._custom[idx] :])))
            self._custom[idx] = len(text)
            out.append(ToolCallDelta(idx, INPUT_CLOSE))
            out.append(PartEnd(idx))
        elif kind == "function_call":
            idx = self._idx((oi, -1))
            if idx not in self._args:  # an upstream that only sends finished items
                self._saw_tool = True
                out.append(ToolCallStart(idx, item.get("call_id") or new_id("call_"), item.get("name") or ""))
                self._args[idx] = 0
            args = item.get("arguments") or ""
            if len(args) > self._args[idx]:
                out.append(ToolCallDelta(idx, args[self._args[idx] :]))
                self._args[idx] = len(args)
            out.append(PartEnd(idx))
        elif kind == "reasoning":
            idx = self._idx((oi, -1))
            if item.get("encrypted_content"):
                out.append(ThinkingDelta(idx, "", signature=item["encrypted_content"], id=item.get("id")))
            out.append(PartEnd(idx))
        elif kind == "message":
            for ci, c in enumerate(item.get("content") or []):
                key = (oi, ci)
                if key not in self._parts and c.get("text"):  # text only present in the finished item
                    out.append(TextDelta(self._idx(key), c["text"]))
                    out.append(PartEnd(self._parts[key]))
        return out

    def close(self) -> list[StreamEvent]:
        if self._ended:
            return []
        self._ended = True
        return [stream_cut()]


class StreamWriter:
    """Canonical events -> Responses events with ``sequence_number``; each canonical text part becomes
    one message item, each tool call one function_call item (a ``custom_tool_call`` for a client's
    custom tool, its input streamed as ``response.custom_tool_call_input.*``)."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        keep_signatures: bool = True,
        client_tools: dict[str, Tool] | None = None,
    ) -> None:
        self.model = model
        self.keep_signatures = keep_signatures  # signed reasoning is relayed sealed with its maker
        self.client_tools = client_tools
        self._origin = ""  # the model the upstream says answered (StreamStart)
        self._pending: dict[int, str] = {}  # reasoning text waiting for its signature
        self._seq = 0
        self._id = new_id("resp_")
        self._created = int(time.time())
        self._started = False
        self._done = False
        # canonical index -> [output_index, item dict, accumulated text/arguments, closed, ...]: reasoning
        # adds its signature and whether its summary part is open; a custom call its InputStream and
        # the input relayed so far
        self._items: dict[int, list[Any]] = {}
        self._output: list[dict[str, Any] | None] = []
        self._dropped: set[int] = set()
        self.usage: Usage | None = None
        self.stop_reason: StopReason | None = None

    def _ev(self, kind: str, payload: dict[str, Any]) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._seq
        self._seq += 1
        return sse.json_frame(payload, kind)

    def _start(self) -> bytes:
        self._started = True
        resp = response_object(self._id, self.model, "in_progress", [], None, self._created)
        return self._ev("response.created", {"response": resp}) + self._ev("response.in_progress", {"response": resp})

    def _add(self, idx: int, item: dict[str, Any]) -> tuple[bytes, int]:
        oi = len(self._output)
        self._output.append(None)
        self._items[idx] = [oi, item, "", False]
        return self._ev("response.output_item.added", {"output_index": oi, "item": dict(item)}), oi

    def write(self, ev: StreamEvent) -> bytes:
        if self._done:
            return b""
        head = b"" if self._started else self._start()
        if isinstance(ev, TextDelta):
            return head + self._text(ev)
        if isinstance(ev, ToolCallDelta):
            st = self._items.get(ev.index)
            if st is None:
                return head
            st[2] += ev.arguments
            if st[1]["type"] == "custom_tool_call":
                return head + self._input_delta(st, st[4].feed(ev.arguments))
            payload = {"item_id": st[1]["id"], "output_index": st[0], "delta": ev.arguments}
            return head + self._ev("response.function_call_arguments.delta", payload)
        if isinstance(ev, ToolCallStart):
            item = call_item(ev.id, ev.name, "", "in_progress", self.client_tools)
            out, _ = self._add(ev.index, item)
            if item["type"] == "custom_tool_call":
                self._items[ev.index] += [InputStream(), ""]
            return head + out
        if isinstance(ev, ThinkingDelta):
            return head + self._thinking(ev)
        if isinstance(ev, PartEnd):
            if self._pending.pop(ev.index, None) is not None:
                self._dropped.add(ev.index)  # reasoning that never got a signature
            return head + self._finish_item(ev.index)
        if isinstance(ev, StreamEnd):
            self._done = True
            self.usage, self.stop_reason = ev.usage, ev.stop_reason
            out = head + b"".join(self._finish_item(i) for i in list(self._items))
            status, incomplete = status_for(ev.stop_reason)
            output = [o for o in self._output if o is not None]
            resp = response_object(self._id, self.model, status, output, ev.usage, self._created)
            resp["incomplete_details"] = incomplete
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return out + self._ev(kind, {"response": resp})
        if isinstance(ev, StreamError):
            self._done = True
            self.stop_reason = "error"
            code = openai_error_type(ev.status)
            out = head + self._ev("error", {"code": code, "message": ev.message, "param": None})
            output = [o for o in self._output if o is not None]
            resp = response_object(self._id, self.model, "failed", output, None, self._created)
            resp["error"] = {"code": "server_error" if ev.status >= 500 else code, "message": ev.message}
            return out + self._ev("response.failed", {"response": resp})
        if isinstance(ev, StreamStart) and ev.model:
            self._origin = ev.model
        return head

    def _text(self, ev: TextDelta) -> bytes:
        out = b""
        st = self._items.get(ev.index)
        if st is None:
            out, oi = self._add(ev.index, message_item(new_id("msg_"), "", "in_progress"))
            st = self._items[ev.index]
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            payload = {"item_id": st[1]["id"], "output_index": oi, "content_index": 0, "part": part}
            out += self._ev("response.content_part.added", payload)
        st[2] += ev.text
        payload = {"item_id": st[1]["id"], "output_index": st[0], "content_index": 0, "delta": ev.text, "logprobs": []}
        return out + self._ev("response.output_text.delta", payload)

    def _thinking(self, ev: ThinkingDelta) -> bytes:
        # Reasoning without a signature cannot be sent back by a store:false client (OpenAI answers
        # "item not found"), so an item is only made once its signature came; the text waits till then.
        if not self.keep_signatures or ev.redacted or ev.index in self._dropped:
            self._dropped.add(ev.index)
            return b""
        st = self._items.get(ev.index)
        if st is None:
            if not ev.signature:
                self._pending[ev.index] = self._pending.get(ev.index, "") + ev.text
                return b""
            text = self._pending.pop(ev.index, "") + ev.text
            out, oi = self._add(ev.index, {"type": "reasoning", "id": new_id("rs_"), "summary": []})
            st = self._items[ev.index]
            st.append(seal_signature(ev.signature, self._origin or self.model))  # signature slot
            st.append(False)  # summary part opened
            return out + self._summary(st, text)
        if ev.signature:
            st[4] = seal_signature(ev.signature, self._origin or self.model)
        return self._summary(st, ev.text)

    def _summary(self, st: list[Any], text: str) -> bytes:
        out = b""
        if text:
            if not st[5]:
                st[5] = True
                out += self._ev(
                    "response.reasoning_summary_part.added",
                    {
                        "item_id": st[1]["id"],
                        "output_index": st[0],
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    },
                )
            st[2] += text
            out += self._ev(
                "response.reasoning_summary_text.delta",
                {"item_id": st[1]["id"], "output_index": st[0], "summary_index": 0, "delta": text},
            )
        return out

    def _input_delta(self, st: list[Any], text: str) -> bytes:
        if not text:
            return b""
        st[5] += text
        payload = {"item_id": st[1]["id"], "output_index": st[0], "delta": text}
        return self._ev("response.custom_tool_call_input.delta", payload)

    def _finish_item(self, idx: int) -> bytes:
        st = self._items.get(idx)
        if st is None or st[3]:
            return b""
        st[3] = True
        oi, item, acc = st[0], st[1], st[2]
        kind = item["type"]
        if kind == "message":
            done = message_item(item["id"], acc, "completed")
            part = done["content"][0]
            out = self._ev(
                "response.output_text.done",
                {"item_id": item["id"], "output_index": oi, "content_index": 0, "text": acc, "logprobs": []},
            )
            out += self._ev(
                "response.content_part.done",
                {"item_id": item["id"], "output_index": oi, "content_index": 0, "part": part},
            )
        elif kind == "custom_tool_call":
            text = unwrap_input(acc)
            relayed = st[5]
            # Deltas relayed what the arguments' JSON said so far; the rest (or all of it, when the
            # arguments were not the plain {"input": ...} shape) comes now.
            out = self._input_delta(st, text[len(relayed) :] if text.startswith(relayed) else "")
            done = {**item, "input": text, "status": "completed"}
            out += self._ev(
                "response.custom_tool_call_input.done", {"item_id": item["id"], "output_index": oi, "input": text}
            )
        elif kind == "function_call":
            done = {**item, "arguments": acc, "status": "completed"}
            out = self._ev(
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": oi, "name": item["name"], "arguments": acc},
            )
        else:
            done = reasoning_item(item["id"], acc, st[4])
            out = b""
            if st[5]:
                base = {"item_id": item["id"], "output_index": oi, "summary_index": 0}
                out += self._ev("response.reasoning_summary_text.done", {**base, "text": acc})
                out += self._ev(
                    "response.reasoning_summary_part.done", {**base, "part": {"type": "summary_text", "text": acc}}
                )
        self._output[oi] = done
        return out + self._ev("response.output_item.done", {"output_index": oi, "item": done})
