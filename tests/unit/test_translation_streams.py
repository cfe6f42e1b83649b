"""Stream translation for all 16 (upstream, client) pairs, checked by the official SDKs' own stream
parsers (Gemini: by the SDKs' documented chunk concatenation): what a real client reassembles is what
the upstream said."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from streams.translation.canonical import StreamEnd, StreamError, StreamEvent, TextDelta, ToolCallDelta, Usage
from streams.translation.common import open_signature
from streams.translation.registry import DIALECTS, get
from streams.translation.sse import SSEDecoder, json_frame

DIALECT_NAMES = list(DIALECTS)
CALLS = [("call_A", "get_weather", {"city": "Paris"}), ("call_B", "get_time", {"tz": "CET"})]
USAGE = Usage(input_tokens=100, output_tokens=20, cached_input_tokens=40)


def _sse(frames: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = b""
    for event, data in frames:
        out += (
            (f"event: {event}\n" if event else "").encode()
            + b"data: "
            + (data.encode() if isinstance(data, str) else json.dumps(data).encode())
            + b"\n\n"
        )
    return out


def chat_upstream(*, usage: bool = True, done: bool = True) -> bytes:
    base = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "gpt-up"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    frames: list[tuple[str | None, Any]] = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " world"}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_B",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                    }
                ]
            }
        ),
        chunk({}, "tool_calls"),
    ]
    if usage:
        u = {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 40},
        }
        frames.append((None, {**base, "choices": [], "usage": u}))
    if done:
        frames.append((None, "[DONE]"))
    return _sse(frames)


def anthropic_upstream() -> bytes:
    def block(i: int, b: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {"type": "content_block_start", "index": i, "content_block": b}

    def delta(i: int, d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}

    def stop(i: int) -> tuple[str, dict[str, Any]]:
        return "content_block_stop", {"type": "content_block_stop", "index": i}

    msg = {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-up", "content": [],
           "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 60, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 0, "output_tokens": 1}}  # fmt: skip
    return _sse(
        [
            ("message_start", {"type": "message_start", "message": msg}),
            ("ping", {"type": "ping"}),
            block(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "Two calls needed."}),
            delta(0, {"type": "signature_delta", "signature": "sig-up"}),
            stop(0),
            block(1, {"type": "text", "text": ""}),
            delta(1, {"type": "text_delta", "text": "Hello"}),
            delta(1, {"type": "text_delta", "text": " world"}),
            stop(1),
            block(2, {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}),
            delta(2, {"type": "input_json_delta", "partial_json": ""}),
            delta(2, {"type": "input_json_delta", "partial_json": '{"city":'}),
            delta(2, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
            stop(2),
            block(3, {"type": "tool_use", "id": "call_B", "name": "get_time", "input": {}}),
            delta(3, {"type": "input_json_delta", "partial_json": '{"tz":"CET"}'}),
            stop(3),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                    "usage": {"output_tokens": 20},
                },
            ),  # fmt: skip
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def responses_upstream() -> bytes:
    seq = iter(range(1000))

    def ev(kind: str, **kw: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **kw}

    resp = {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "gpt-5-up",
        "output": [],
    }
    rsn = {"type": "reasoning", "id": "rs_up", "summary": []}
    msg = {"type": "message", "id": "msg_up", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    fa = {
        "type": "function_call",
        "id": "fc_A",
        "call_id": "call_A",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    fb = {
        "type": "function_call",
        "id": "fc_B",
        "call_id": "call_B",
        "name": "get_time",
        "arguments": "",
        "status": "in_progress",
    }
    usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40}, "output_tokens": 20,
             "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 120}  # fmt: skip
    return _sse(
        [
            ev("response.created", response=resp),
            ev("response.in_progress", response=resp),
            ev("response.output_item.added", output_index=0, item=rsn),
            ev(
                "response.reasoning_summary_part.added",
                item_id="rs_up",
                output_index=0,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            ),
            ev(
                "response.reasoning_summary_text.delta",
                item_id="rs_up",
                output_index=0,
                summary_index=0,
                delta="Two calls needed.",
            ),
            ev(
                "response.output_item.done",
                output_index=0,
                item={
                    **rsn,
                    "summary": [{"type": "summary_text", "text": "Two calls needed."}],
                    "encrypted_content": "enc-up",
                },
            ),
            ev("response.output_item.added", output_index=1, item=msg),
            ev("response.content_part.added", item_id="msg_up", output_index=1, content_index=0, part=part),
            ev("response.output_text.delta", item_id="msg_up", output_index=1, content_index=0, delta="Hello"),
            ev("response.output_text.delta", item_id="msg_up", output_index=1, content_index=0, delta=" world"),
            ev("response.output_text.done", item_id="msg_up", output_index=1, content_index=0, text="Hello world"),
            ev(
                "response.content_part.done",
                item_id="msg_up",
                output_index=1,
                content_index=0,
                part={**part, "text": "Hello world"},
            ),
            ev(
                "response.output_item.done",
                output_index=1,
                item={**msg, "status": "completed", "content": [{**part, "text": "Hello world"}]},
            ),
            ev("response.output_item.added", output_index=2, item=fa),
            ev("response.function_call_arguments.delta", item_id="fc_A", output_index=2, delta='{"city":'),
            ev("response.function_call_arguments.delta", item_id="fc_A", output_index=2, delta='"Paris"}'),
            ev("response.function_call_arguments.done", item_id="fc_A", output_index=2, arguments='{"city":"Paris"}'),
            ev(
                "response.output_item.done",
                output_index=2,
                item={**fa, "arguments": '{"city":"Paris"}', "status": "completed"},
            ),
            ev("response.output_item.added", output_index=3, item=fb),
            ev("response.function_call_arguments.delta", item_id="fc_B", output_index=3, delta='{"tz":"CET"}'),
            ev(
                "response.output_item.done",
                output_index=3,
                item={**fb, "arguments": '{"tz":"CET"}', "status": "completed"},
            ),
            ev("response.completed", response={**resp, "status": "completed", "usage": usage}),
        ]
    )


def gemini_chunk(parts: list[dict[str, Any]], finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-up", "responseId": "resp-up"}
    if usage:
        chunk["usageMetadata"] = usage
    return chunk


GEMINI_USAGE = {"promptTokenCount": 100, "candidatesTokenCount": 15, "thoughtsTokenCount": 5,
                "cachedContentTokenCount": 40, "totalTokenCount": 120}  # fmt: skip


def gemini_upstream() -> bytes:
    running = {"promptTokenCount": 100, "totalTokenCount": 100}
    return _sse(
        [
            (None, gemini_chunk([{"text": "Two calls needed.", "thought": True}], usage=running)),
            (None, gemini_chunk([{"text": "Hello"}], usage=running)),
            (None, gemini_chunk([{"text": " world"}], usage=running)),
            (None, gemini_chunk([
                {"functionCall": {"id": "call_A", "name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "c2lnLXVw"},
                {"functionCall": {"id": "call_B", "name": "get_time", "args": {"tz": "CET"}}},
            ], "STOP", GEMINI_USAGE)),
        ]
    )  # fmt: skip


UPSTREAM = {
    "openai_chat": chat_upstream,
    "anthropic_messages": anthropic_upstream,
    "openai_responses": responses_upstream,
    "gemini": gemini_upstream,
}


def parse_all(dialect: str, raw: bytes, chunk: int = 17) -> list[StreamEvent]:
    """Feed bytes in small chunks, like a network would."""
    dec, parser = SSEDecoder(), get(dialect).StreamParser()
    events: list[StreamEvent] = []
    for i in range(0, len(raw), chunk):
        for event, data in dec.feed(raw[i : i + chunk]):
            events += parser.feed(event, data)
    for event, data in dec.flush():
        events += parser.feed(event, data)
    return events + parser.close()


def translate(src: str, dst: str, raw: bytes, **writer_kw: Any) -> bytes:
    writer = get(dst).StreamWriter("client-model", **writer_kw)
    return b"".join(writer.write(ev) for ev in parse_all(src, raw))


def _mock(body: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


TOOLS_OAI = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for _, n, _ in CALLS]


def gemini_view(body: bytes) -> dict[str, Any]:
    """A Gemini stream as google-genai and gemini-cli reassemble it: every chunk is a whole
    GenerateContentResponse; the text is the concatenation of the non-thought text parts, calls arrive
    whole, the finishReason and the usage are the last ones seen."""
    text, thoughts, calls, stop, usage = "", "", [], None, None
    for event, data in SSEDecoder().feed(body):
        assert event is None and data != "[DONE]"
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        candidate = chunk["candidates"][0]
        assert candidate["content"]["role"] == "model"
        for part in candidate["content"]["parts"]:
            if "functionCall" in part:
                fn = part["functionCall"]
                calls.append((fn["id"], fn["name"], fn["args"]))
            elif part.get("thought"):
                thoughts += part["text"]
            else:
                text += part["text"]
        stop = candidate.get("finishReason", stop)
        usage = chunk.get("usageMetadata", usage)
    assert stop is not None, "the last chunk must carry a finishReason"
    return {
        "text": text,
        "calls": calls,
        "stop": stop,
        "usage": (usage["promptTokenCount"], usage["candidatesTokenCount"] + usage.get("thoughtsTokenCount", 0),
                  usage.get("cachedContentTokenCount", 0)) if usage else None,
        "thinking": thoughts or None,
    }  # fmt: skip


def client_view(dst: str, body: bytes) -> dict[str, Any]:
    """What the official SDK's stream helper reassembles from our bytes."""
    if dst == "gemini":
        return gemini_view(body)
    if dst == "openai_chat":
        client = openai.OpenAI(api_key="k", base_url="http://router/v1", http_client=_mock(body), max_retries=0)
        with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS_OAI
        ) as s:  # type: ignore[arg-type]
            final = s.get_final_completion()
        choice = final.choices[0]
        u = final.usage
        return {
            "text": choice.message.content or "",
            "calls": [
                (c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []
            ],
            "stop": choice.finish_reason,
            "usage": (u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details.cached_tokens) if u else None,  # type: ignore[union-attr]
            "thinking": getattr(choice.message, "reasoning_content", None),
        }
    if dst == "anthropic_messages":
        client = anthropic.Anthropic(api_key="k", base_url="http://router", http_client=_mock(body), max_retries=0)
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s:
            msg = s.get_final_message()
        u = msg.usage
        thinking = [(b.thinking, b.signature) for b in msg.content if b.type == "thinking"]
        return {
            "text": "".join(b.text for b in msg.content if b.type == "text"),
            "calls": [(b.id, b.name, b.input) for b in msg.content if b.type == "tool_use"],
            "stop": msg.stop_reason,
            "usage": (
                u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
                u.output_tokens,
                u.cache_read_input_tokens,
            ),  # fmt: skip
            "thinking": thinking or None,
        }
    client = openai.OpenAI(api_key="k", base_url="http://router/v1", http_client=_mock(body), max_retries=0)
    with client.responses.stream(model="m", input="x") as s:
        resp = s.get_final_response()
    u = resp.usage
    reasoning = [
        (i.summary[0].text if i.summary else "", i.encrypted_content) for i in resp.output if i.type == "reasoning"
    ]
    return {
        "text": resp.output_text,
        "calls": [(i.call_id, i.name, json.loads(i.arguments)) for i in resp.output if i.type == "function_call"],
        "stop": resp.status,
        "usage": (u.input_tokens, u.output_tokens, u.input_tokens_details.cached_tokens) if u else None,
        "thinking": reasoning or None,
    }


EXPECTED_STOP = {"openai_chat": "tool_calls", "anthropic_messages": "tool_use", "openai_responses": "completed",
                 "gemini": "STOP"}  # fmt: skip


@pytest.mark.parametrize("src", DIALECT_NAMES)
@pytest.mark.parametrize("dst", DIALECT_NAMES)
def test_stream_pair_reassembles_in_official_sdk(src: str, dst: str) -> None:
    body = translate(src, dst, UPSTREAM[src](), include_usage=True)
    view = client_view(dst, body)
    assert view["text"] == "Hello world"
    assert view["calls"] == [(i, n, a) for i, n, a in CALLS]
    assert view["stop"] == EXPECTED_STOP[dst]
    assert view["usage"] == (100, 20, 40)
    signed = {"anthropic_messages": "sig-up", "openai_responses": "enc-up"}
    if dst in signed:
        # only signed reasoning reaches these clients, sealed with the model that made it
        if src in signed:
            ((text, value),) = view["thinking"]
            signature, origin, _ = open_signature(value)
            assert (text, signature) == ("Two calls needed.", signed[src]) and origin and value != signature
        else:
            assert view["thinking"] is None
    elif src != "openai_chat":  # plain reasoning text (Chat's reasoning_content, Gemini's thoughts) is relayed
        assert view["thinking"] == "Two calls needed."


def test_reasoning_without_keep_signatures_is_not_relayed() -> None:
    for dialect, upstream in (("anthropic_messages", anthropic_upstream), ("openai_responses", responses_upstream)):
        view = client_view(dialect, translate(dialect, dialect, upstream(), keep_signatures=False))
        assert view["thinking"] is None


def test_chat_writer_event_shape() -> None:
    frames = SSEDecoder().feed(translate("anthropic_messages", "openai_chat", anthropic_upstream()))
    assert frames[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["index"] == 0 and calls[0]["id"] == "call_A" and calls[0]["function"]["name"] == "get_weather"
    assert {c["index"] for c in calls} == {0, 1}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"  # no usage chunk unless asked
    assert all("usage" not in c for c in chunks)


def test_anthropic_writer_event_sequence() -> None:
    names = [e for e, _ in SSEDecoder().feed(translate("openai_chat", "anthropic_messages", chat_upstream()))]
    assert names == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip


def test_responses_writer_sequence_numbers_are_consecutive() -> None:
    frames = SSEDecoder().feed(translate("openai_chat", "openai_responses", chat_upstream()))
    data = [json.loads(d) for _, d in frames]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert [e for e, _ in frames][:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert all(e == d["type"] for (e, _), d in zip(frames, data, strict=True))


def test_chat_upstream_without_usage_still_ends() -> None:
    events = parse_all("openai_chat", chat_upstream(usage=False))
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.stop_reason == "tool_use" and end.usage == Usage()
    # no [DONE] either (connection closed after the finish chunk): close() ends the stream
    events = parse_all("openai_chat", chat_upstream(usage=False, done=False))
    assert isinstance(events[-1], StreamEnd) and sum(isinstance(e, StreamEnd) for e in events) == 1


def test_chat_usage_is_taken_from_final_chunk() -> None:
    end = parse_all("openai_chat", chat_upstream())[-1]
    assert isinstance(end, StreamEnd) and end.usage == USAGE


def test_cut_stream_is_an_error_not_a_silent_end() -> None:
    for src in DIALECT_NAMES:
        raw = UPSTREAM[src]()
        events = parse_all(src, raw[: len(raw) // 2])
        assert isinstance(events[-1], StreamError), src
        assert not any(isinstance(e, StreamEnd) for e in events)


def test_upstream_interleaved_parallel_tool_deltas() -> None:
    base = {"id": "c", "model": "m"}
    frames = [
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}},
            {"index": 1, "id": "b", "function": {"name": "g", "arguments": '{"y"'}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": ":1}"}}, {"index": 1, "function": {"arguments": ":2}"}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]  # fmt: skip
    events = parse_all("openai_chat", _sse([(None, f) for f in frames] + [(None, "[DONE]")]))
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            args[e.index] = args.get(e.index, "") + e.arguments
    assert sorted(args.values()) == ['{"x":1}', '{"y":2}']
    view = client_view(
        "openai_chat", translate("openai_chat", "openai_chat", _sse([(None, f) for f in frames] + [(None, "[DONE]")]))
    )
    assert [(c[0], c[2]) for c in view["calls"]] == [("a", {"x": 1}), ("b", {"y": 2})]


def test_stream_errors_reach_clients_as_their_sdk_errors() -> None:
    raw = _sse([("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 1}}}),
                ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])  # fmt: skip
    events = parse_all("anthropic_messages", raw)
    assert isinstance(events[-1], StreamError) and events[-1].status == 529
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        client_view("anthropic_messages", translate("anthropic_messages", "anthropic_messages", raw))
    with pytest.raises(openai.APIError, match="Overloaded"):
        client_view("openai_chat", translate("anthropic_messages", "openai_chat", raw))
    frames = SSEDecoder().feed(translate("anthropic_messages", "openai_responses", raw))
    assert [e for e, _ in frames][-2:] == ["error", "response.failed"]
    assert json.loads(frames[-1][1])["response"]["error"]["message"] == "Overloaded"


def test_chat_upstream_error_chunk() -> None:
    raw = _sse([(None, {"error": {"message": "context too long", "code": 400}})])
    events = parse_all("openai_chat", raw)
    assert events == [StreamError("context too long", status=400, error_type="api_error")]
    body = translate("openai_chat", "anthropic_messages", raw)
    assert json.loads(SSEDecoder().feed(body)[0][1])["error"]["type"] == "invalid_request_error"


def test_text_only_upstream_parts_are_indexed_and_closed() -> None:
    base = {"id": "c", "model": "m"}
    raw = _sse([(None, {**base, "choices": [{"index": 0, "delta": {"content": "a"}}]}),
                (None, {**base, "choices": [{"index": 0, "delta": {"reasoning_content": "r"}}]}),
                (None, {**base, "choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "length"}]}),
                (None, "[DONE]")])  # fmt: skip
    events = parse_all("openai_chat", raw)
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert [(t.index, t.text) for t in texts] == [(0, "a"), (2, "b")]
    assert isinstance(events[-1], StreamEnd) and events[-1].stop_reason == "max_tokens"
    view = client_view("anthropic_messages", translate("openai_chat", "anthropic_messages", raw))
    assert view["text"] == "ab" and view["stop"] == "max_tokens"


def test_json_frame_helper_used_by_writers_is_compact() -> None:
    assert json_frame({"a": 1}, "e") == b'event: e\ndata: {"a":1}\n\n'
