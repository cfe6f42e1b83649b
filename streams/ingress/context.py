"""Who is calling: the caller's key (the client: ``routing.features.detect_client``; the task-session:
``routing.sessions.session_identity``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping


def client_key(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``x-api-key`` (Claude Code) or ``Authorization: Bearer`` (SDKs, Codex)."""
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def browser_key(headers: Mapping[str, str]) -> str | None:
    """The key a browser sends after the dashboard's Basic-auth prompt: the password (or the user name
    when the password is empty), so ``anything:wr-…`` and ``wr-…:`` both work."""
    auth = headers.get("authorization")
    if not auth or auth[:6].lower() != "basic ":
        return None
    try:
        user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password or user or None

