"""One session identity for every client we know, from the request each one really sends (the shapes of
Claude Code, Codex, opencode, aider and the SDKs, parsed by the dialect parsers the gateway uses)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.routing.client_detection import lower_case_headers
from streams.routing.sessions import session_identity
from streams.translation import registry

CC_SESSION = "5120a99f-85e1-47a2-8d0f-86b585f1285a"
CODEX_SESSION = "01a20265-3aaa-76d2-a2a4-6120b76b45b6"
CC_USER_ID = json.dumps({"device_id": "4f1b", "account_uuid": "", "session_id": CC_SESSION})


def claude_code(**headers: str) -> dict[str, Any]:
    return {
        "model": "claude-opus-4-5",
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "fix the failing test"}]}],
        "metadata": {"user_id": CC_USER_ID},
        "max_tokens": 32000,
        "stream": True,
    }


def codex() -> dict[str, Any]:
    return {
        "model": "router/auto", "stream": True, "store": False, "prompt_cache_key": CODEX_SESSION,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the test"}]}],
    }


def chat(text: str = "fix the failing test") -> dict[str, Any]:
    return {"model": "router/auto", "stream": True, "messages": [{"role": "user", "content": text}]}


def anthropic_sdk() -> dict[str, Any]:
    return {"model": "claude-opus-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "fix it"}]}


CASES = [
    # (client, dialect, headers as sent, body, expected id or None for "a conversation hash")
    ("claude code", "anthropic_messages",
     {"User-Agent": "claude-cli/2.1.197 (external, sdk-cli)", "X-Claude-Code-Session-Id": CC_SESSION},
     claude_code(), CC_SESSION),
    ("claude code, no session header", "anthropic_messages", {"User-Agent": "claude-cli/2.1.197"},
     claude_code(), CC_SESSION),
    ("codex", "openai_responses",
     {"session-id": CODEX_SESSION, "thread-id": CODEX_SESSION, "User-Agent": "codex_exec/0.169.0"},
     codex(), CODEX_SESSION),
    ("codex, body only", "openai_responses", {"User-Agent": "codex_exec/0.169.0"}, codex(), CODEX_SESSION),
    ("opencode", "openai_chat", {"x-opencode-session": "ses_7cbe170b3ffe", "User-Agent": "opencode/1.0"},
     chat(), "ses_7cbe170b3ffe"),
    ("thread-id only", "openai_chat", {"thread-id": "thread-9"}, chat(), "thread-9"),
    ("ours wins", "anthropic_messages",
     {"x-router-session": "task-42", "X-Claude-Code-Session-Id": CC_SESSION}, claude_code(), "task-42"),
    ("aider", "openai_chat", {"User-Agent": "OpenAI/Python 2.20.0"}, chat(), None),
    ("openai sdk", "openai_chat", {"User-Agent": "OpenAI/Python 3.54.0"}, chat(), None),
    ("anthropic sdk", "anthropic_messages", {"User-Agent": "Anthropic/Python 2.12.0"}, anthropic_sdk(), None),
]


@pytest.mark.parametrize(("client", "dialect", "headers", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_client_gets_its_own_session_id(
    client: str, dialect: str, headers: dict[str, str], body: dict[str, Any], expected: str | None
) -> None:
    req = registry.get(dialect).parse_request(body)
    sid = session_identity(lower_case_headers(headers), req, "key-1")
    if expected is None:
        assert sid.startswith("h-")
    else:
        assert sid == expected


def test_conversation_hash_follows_the_conversation_and_the_key() -> None:
    parse = registry.get("openai_chat").parse_request
    first = session_identity({}, parse(chat()), "key-1")
    turn2 = chat()
    turn2["messages"] += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "now the docs"}]
    assert session_identity({}, parse(turn2), "key-1") == first
    assert session_identity({}, parse(chat("another task")), "key-1") != first
    assert session_identity({}, parse(chat()), "key-2") != first


def test_blank_and_long_ids() -> None:
    req = registry.get("openai_chat").parse_request(chat())
    assert session_identity({"x-router-session": "  "}, req).startswith("h-")
    assert session_identity({"x-router-session": "x" * 500}, req) == "x" * 200
