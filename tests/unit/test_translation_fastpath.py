"""Same-dialect fast path: only routing-relevant fields change; everything else is kept."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streams.translation.anthropic_messages import rewrite_anthropic_beta
from streams.translation.canonical import TranslationError
from streams.translation.fastpath import rewrite_body

CAPTURED = Path("/work/shared/reference/captured_requests/claude_code_turn2_tool_result_messages.json")


def claude_code_body(min_bytes: int = 76_000) -> dict[str, Any]:
    """A Claude Code-shaped body grown to the size real ones have (the captured one is trimmed)."""
    if CAPTURED.is_file():
        body = json.loads(CAPTURED.read_text())["body"]
        body["tools"] = [t for t in body["tools"] if isinstance(t, dict)]
    else:
        body = {
            "model": "claude-sonnet-5",
            "max_tokens": 64000,
            "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What does hello.py print?"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "h.py"}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "print('hello')"}],
                },
            ],
            "tools": [
                {
                    "name": "Read",
                    "description": "Reads a file. " * 20,
                    "input_schema": {"type": "object", "properties": {}},
                }
            ],
            "thinking": {"type": "adaptive"},
            "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        }
    base = list(body["tools"])
    n = 0
    while len(json.dumps(body)) < min_bytes:
        body["tools"].append({**base[n % len(base)], "name": f"{base[n % len(base)]['name']}_{n}"})
        n += 1
    return body


def _rewrite(body: dict[str, Any], dialect: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("supports_thinking", True)
    kw.setdefault("ensure_usage", True)
    return json.loads(rewrite_body(json.dumps(body).encode(), dialect, "up-model", **kw))


def test_only_model_changes_for_a_thinking_model() -> None:
    body = claude_code_body()
    # the pending tool turn must carry thinking, or thinking is (rightly) turned off
    body["messages"][-2]["content"].insert(0, {"type": "thinking", "thinking": "t", "signature": "s"})
    out = _rewrite(body, "anthropic_messages")
    assert out == {**body, "model": "up-model"}
    assert list(out) == list(body)  # field order kept too


def test_anthropic_thinking_fields_removed_for_a_model_without_thinking() -> None:
    body = claude_code_body()
    body["output_config"] = {"effort": "high", "format": {"type": "json_schema", "schema": {}}}
    body["context_management"] = {"edits": [{"type": "clear_thinking_20251015"}, {"type": "clear_tool_uses_20250919"}]}
    out = _rewrite(body, "anthropic_messages", supports_thinking=False)
    assert "thinking" not in out
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {}}}
    assert out["context_management"] == {"edits": [{"type": "clear_tool_uses_20250919"}]}
    assert out["messages"] == body["messages"] and out["system"] == body["system"] and out["tools"] == body["tools"]


def test_anthropic_thinking_off_when_pending_tool_turn_came_from_another_model() -> None:
    body = claude_code_body()  # last assistant turn: tool_use without a thinking block
    out = _rewrite(body, "anthropic_messages", supports_thinking=True)
    assert "thinking" not in out and "context_management" not in out


def test_openai_chat_stream_gets_usage() -> None:
    body = {"model": "router-auto", "stream": True, "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    out = _rewrite(body, "openai_chat")
    assert out == {**body, "model": "up-model", "stream_options": {"include_usage": True}}
    kept = _rewrite({**body, "stream_options": {"include_obfuscation": False}}, "openai_chat")
    assert kept["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert "stream_options" not in _rewrite({**body, "stream": False}, "openai_chat")
    assert "stream_options" not in _rewrite(body, "openai_chat", ensure_usage=False)


def test_reasoning_fields_dropped_for_openai_models_without_reasoning() -> None:
    chat = {"model": "m", "messages": [], "reasoning_effort": "high"}
    assert "reasoning_effort" not in _rewrite(chat, "openai_chat", supports_thinking=False)
    resp = {"model": "m", "input": "x", "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    out = _rewrite(resp, "openai_responses", supports_thinking=False)
    assert "reasoning" not in out and out["include"] == []
    assert _rewrite(resp, "openai_responses") == {**resp, "model": "up-model"}


def test_untouched_bytes_are_relayed_verbatim() -> None:
    raw = b'{"model":"a","messages":[{"role":"user","content":"caf\\u00e9  \\n"}],"x":1.50}'
    out = rewrite_body(raw, "openai_chat", "b", supports_thinking=True, ensure_usage=True)
    assert out == b'{"model":"b","messages":[{"role":"user","content":"caf\\u00e9  \\n"}],"x":1.50}'


def test_bad_body() -> None:
    with pytest.raises(TranslationError) as exc:
        rewrite_body(b"[1,2]", "openai_chat", "m", supports_thinking=True, ensure_usage=True)
    assert exc.value.param == "body"


def test_anthropic_beta_rewrite() -> None:
    header = "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,context-management-2025-06-27,effort-2025-11-24"
    assert rewrite_anthropic_beta(header, True) == header
    assert rewrite_anthropic_beta(header, False) == "claude-code-20250219,context-management-2025-06-27"


def test_fast_path_timing_on_a_76kb_claude_code_body() -> None:
    raw = json.dumps(claude_code_body()).encode()
    assert len(raw) >= 76_000
    for _ in range(20):  # warm up
        rewrite_body(raw, "anthropic_messages", "up", supports_thinking=False, ensure_usage=True)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        rewrite_body(raw, "anthropic_messages", "up", supports_thinking=False, ensure_usage=True)
    per = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        rewrite_body(raw, "anthropic_messages", "up", supports_thinking=True, ensure_usage=True)
    per_thinking = (time.perf_counter() - t0) / n * 1e6
    print(f"\nfast path on {len(raw)} bytes: {per:.1f} us (strip thinking), {per_thinking:.1f} us (thinking check)")
