"""Which coding agent sent a request: from its User-Agent and client headers, else its shape."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from streams.translation.canonical import CanonicalRequest, TextPart

# Recent Claude Code versions name the subagent a request comes from; the parent's requests carry none.
CLAUDE_CODE_AGENT_HEADER = "x-claude-code-agent-id"
# How the system prompts of Claude Code's built-in subagents (Task/Agent tool: general-purpose, Explore,
# Plan) open, for the versions that send no agent header. The main thread's opens otherwise.
_SUBAGENT_OPENINGS = ("You are an agent for Claude Code", "You are a file search specialist for Claude Code",
                      "You are a software architect and planning specialist for Claude Code")
_MAX_AGENT_ID = 100
_AIDER_MARKERS = ("Act as an expert software developer", "SEARCH/REPLACE", "*added these files to the chat*")


def lower_case_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers with lower-case names: the gateway's own map as it is (the ingress lower-cases once per
    request), anything else (a test's dict, Starlette's Headers) copied lower-cased."""
    if isinstance(headers, dict) and all(k.islower() for k in headers):
        return headers
    return {k.lower(): v for k, v in headers.items()}


def detect_client(h: Mapping[str, str], req: CanonicalRequest | None = None) -> tuple[str, str]:
    """(client, version) from User-Agent and client-specific headers, else from the request's shape."""
    ua = h.get("user-agent", "")
    ual = ua.lower()
    if ual.startswith("claude-cli") or "x-claude-code-session-id" in h or "claude-code" in h.get("anthropic-beta", ""):
        return "claude_code", _version_after(ua, "/")
    if ual.startswith("codex") or h.get("originator", "").startswith("codex") or "x-codex-window-id" in h:
        return "codex", _version_after(ua, "/")
    if ual.startswith("geminicli"):  # "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal)"
        return "gemini_cli", _version_after(ua, "/").split("/", 1)[0]
    if "aider" in ual:
        return "aider", _version_after(ua, "/")
    if "cursor" in ual:
        return "cursor", _version_after(ua, "/")
    if req is not None and _looks_like_aider(req):
        return "aider", ""
    if (ual.startswith(("openai/", "anthropic/", "asyncopenai/", "asyncanthropic/")) or "x-stainless-lang" in h
            or h.get("x-goog-api-client", "").startswith("google-genai-sdk")):
        return "sdk", _version_after(ua, "/")
    return "unknown", ""


def _version_after(ua: str, sep: str) -> str:
    head = ua.split(" ", 1)[0]
    return head.split(sep, 1)[1] if sep in head else ""


def _looks_like_aider(req: CanonicalRequest) -> bool:
    # aider speaks through the OpenAI SDK (its UA says "OpenAI/Python"); its system prompt gives it away.
    texts = [p.text for p in req.system[:2]]
    for m in req.messages[:2]:
        if m.role == "system":
            texts.extend(p.text for p in m.parts[:1] if isinstance(p, TextPart))
    return any(marker in t[:3000] for t in texts for marker in _AIDER_MARKERS)


def subagent_of(h: Mapping[str, str], req: CanonicalRequest) -> str:
    """Which of a session's agents sent the request: "" for the main thread, else a key naming the
    subagent (its ``x-claude-code-agent-id``, else a hash of its built-in system prompt). A subagent
    shares the parent's session id (header and ``metadata.user_id``) but has its own conversation.
    ``h`` must have lower-case names."""
    agent = h.get(CLAUDE_CODE_AGENT_HEADER, "").strip()
    if agent:
        return "agent:" + agent[:_MAX_AGENT_ID]
    for part in req.system[:4]:  # Claude Code puts a billing line and an identity line first
        head = part.text[:200].lstrip()  # sliced first: the main prompt is ~25 KB
        if head.startswith(_SUBAGENT_OPENINGS):
            digest = hashlib.blake2b(part.text[:4000].encode("utf-8", "surrogatepass"), digest_size=6)
            return "prompt:" + digest.hexdigest()
    return ""
