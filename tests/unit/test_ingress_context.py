"""Client key, client name and session id, as agents send them."""

from __future__ import annotations

import json

from streams.ingress.context import client_key
from streams.routing.sessions import session_identity as session_id
from streams.translation.canonical import CanonicalRequest, Message, TextPart


def req(text: str = "fix the bug", **kw: object) -> CanonicalRequest:
    return CanonicalRequest(model="m", messages=[Message("user", [TextPart(text)])], **kw)  # type: ignore[arg-type]


def test_client_key_either_header() -> None:
    assert client_key({"x-api-key": "k1"}) == "k1"
    assert client_key({"authorization": "Bearer k2"}) == "k2"
    assert client_key({"authorization": "bearer  k3 "}) == "k3"
    assert client_key({"authorization": "Basic abc"}) is None
    assert client_key({}) is None


def test_session_from_headers_metadata_and_cache_key() -> None:
    assert session_id({"x-claude-code-session-id": "cc-1"}, req(), None) == "cc-1"
    assert session_id({"session-id": "codex-1"}, req(), None) == "codex-1"
    meta = {"user_id": json.dumps({"device_id": "d", "session_id": "meta-1"})}
    assert session_id({}, req(metadata=meta), None) == "meta-1"
    assert session_id({}, req(extra={"prompt_cache_key": "pck"}), None) == "pck"


def test_session_hash_is_stable_per_conversation() -> None:
    first = session_id({}, req("task A"), "key")
    later = req("task A")
    later.messages.append(Message("assistant", [TextPart("ok")]))
    assert session_id({}, later, "key") == first
    assert session_id({}, req("task B"), "key") != first
    assert session_id({}, req("task A"), "other key") != first
