"""Usage picked out of relayed provider bytes (the same-dialect fast path)."""

from __future__ import annotations

import json

from streams.translation.canonical import Usage
from streams.translation.registry import get
from streams.translation.scanner import UsageScanner


def usage_from_body(dialect: str, data: bytes) -> Usage:
    """Zeros when absent or unreadable (the codec's ``body_usage`` says None for unreadable)."""
    return get(dialect).body_usage(data) or Usage()


def scanner_for(dialect: str, *, drop_usage_chunk: bool = False) -> UsageScanner:
    return get(dialect).usage_scanner(drop_usage_chunk=drop_usage_chunk)


def sse(*events: tuple[str | None, dict | str]) -> bytes:
    out = b""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out += (f"event: {name}\n" if name else "").encode() + f"data: {payload}\n\n".encode()
    return out


def test_whole_bodies_each_dialect() -> None:
    chat = {"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 7,
                                     "prompt_tokens_details": {"cached_tokens": 60}}}
    u = usage_from_body("openai_chat", json.dumps(chat).encode())
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == (100, 7, 60)

    resp = {"output": [], "usage": {"input_tokens": 50, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 5},
                                    "output_tokens_details": {"reasoning_tokens": 3}}}
    u = usage_from_body("openai_responses", json.dumps(resp).encode())
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (50, 9, 5, 3)

    anth = {"content": [], "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 30,
                                     "cache_creation_input_tokens": 2}}
    u = usage_from_body("anthropic_messages", json.dumps(anth).encode())
    # Anthropic reports cached tokens apart; canonical input includes them.
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == (42, 4, 30)


def test_unreadable_body_gives_zero_usage() -> None:
    assert usage_from_body("openai_chat", b"not json").input_tokens == 0


def test_anthropic_stream_split_anywhere() -> None:
    stream = sse(
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1,
                                                                          "cache_read_input_tokens": 8}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 25}}),
        ("message_stop", {"type": "message_stop"}),
    )
    for size in (1, 7, 64, len(stream)):
        scanner = scanner_for("anthropic_messages")
        forwarded = b"".join(scanner.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        assert forwarded == stream  # relayed untouched
        assert (scanner.usage.input_tokens, scanner.usage.output_tokens, scanner.usage.cached_input_tokens) == (20, 25, 8)
        assert scanner.finished and scanner.error is None


def test_responses_stream_completed_and_failed() -> None:
    ok = sse(("response.created", {"type": "response.created", "response": {"usage": None}}),
             ("response.completed", {"type": "response.completed",
                                     "response": {"status": "completed", "usage": {"input_tokens": 5, "output_tokens": 6}}}))
    s = scanner_for("openai_responses")
    s.feed(ok)
    assert s.finished and (s.usage.input_tokens, s.usage.output_tokens) == (5, 6)

    failed = sse(("response.failed", {"type": "response.failed",
                                      "response": {"status": "failed", "error": {"message": "overloaded"}}}))
    s = scanner_for("openai_responses")
    s.feed(failed)
    assert s.error == "overloaded"


def test_chat_usage_chunk_dropped_only_when_client_did_not_ask() -> None:
    content = {"choices": [{"index": 0, "delta": {"content": "usage error"}}], "usage": None}
    final = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    stream = sse((None, content), (None, final), (None, "[DONE]"))

    keep = scanner_for("openai_chat")
    assert keep.feed(stream) == stream
    assert keep.usage.output_tokens == 2 and keep.finished

    drop = scanner_for("openai_chat", drop_usage_chunk=True)
    out = b"".join(drop.feed(stream[i : i + 5]) for i in range(0, len(stream), 5))
    assert out == sse((None, content), (None, "[DONE]"))
    assert drop.usage.input_tokens == 3 and drop.finished


def test_chat_error_chunk_is_reported() -> None:
    s = scanner_for("openai_chat")
    s.feed(sse((None, {"error": {"message": "boom", "type": "server_error"}})))
    assert s.error == "boom"


def test_relayed_and_translated_usage_agree() -> None:
    """The same-dialect relay (bytes) and a translated response (decoded dict) count usage alike,
    DeepSeek's ``prompt_cache_hit_tokens`` and cache writes included."""
    from streams.translation import anthropic_messages, openai_chat, openai_responses

    cases = [
        (openai_chat, {"prompt_tokens": 90, "completion_tokens": 4, "prompt_cache_hit_tokens": 64}),
        (openai_chat, {"prompt_tokens": 90, "completion_tokens": 4,
                       "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
                       "completion_tokens_details": {"reasoning_tokens": 3}}),
        (openai_responses, {"input_tokens": 50, "output_tokens": 9,
                            "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 7},
                            "output_tokens_details": {"reasoning_tokens": 3}}),
        (anthropic_messages, {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 30,
                              "cache_creation_input_tokens": 2}),
    ]  # fmt: skip
    for dialect, usage in cases:
        relayed = dialect.body_usage(json.dumps({"usage": usage}).encode())
        assert relayed == dialect.parse_usage(usage), (dialect.DIALECT, usage)
    assert openai_chat.parse_usage({"prompt_tokens": 90, "prompt_cache_hit_tokens": 64}).cached_input_tokens == 64
    assert openai_chat.parse_usage({"prompt_tokens": "many"}) == Usage()  # another shape: unknown, not a crash
