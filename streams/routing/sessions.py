"""Task-sessions: which model a session is on, and when it may move to another.

A session keeps its model (the provider's prompt cache is warm, the agent's history was written by it).
A switch happens only at a safe boundary and only when it pays:

- never inside a tool-call loop (the last message is a tool result, or the assistant's last turn has
  tool calls pending): the agent is mid-step;
- never to a model that cannot continue the conversation (signed thinking blocks in the history and a
  target without thinking; a context larger than the target's window; tools or images it lacks);
- only when the expected saving over the session's remaining requests beats the prompt-cache loss
  (``tokens * (price_in - price_cached)`` of the current model). An escalation after a failed outcome
  skips this last check: it trades money for success on purpose.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec

from streams.routing.catalog import Catalog
from streams.routing.features import Features
from streams.translation.canonical import CanonicalRequest, TextPart

# Header names clients put their session id in (lower-case), by client. Order of use: see session_identity.
ROUTER_SESSION_HEADER = "x-router-session"  # ours: README, demo, every routed response echoes it
CLAUDE_CODE_SESSION_HEADER = "x-claude-code-session-id"
CODEX_SESSION_HEADER = "session-id"
OPENCODE_SESSION_HEADER = "x-opencode-session"
THREAD_HEADERS = ("thread-id", "x-session-id")  # Codex's thread, and a common convention
_MAX_ID = 200


class _UserId(msgspec.Struct):
    session_id: str | None = None


def _claude_code_user_id(req: CanonicalRequest) -> str | None:
    """The session inside Claude Code's ``metadata.user_id`` JSON (the Anthropic parser keeps it in ``user``)."""
    raw = req.user or (req.metadata.get("user_id") if req.metadata else None)
    if not raw or not raw.startswith("{"):
        return None
    try:
        return msgspec.json.decode(raw, type=_UserId).session_id or None
    except msgspec.DecodeError:
        return None


def _conversation_hash(req: CanonicalRequest, key: str | None) -> str:
    # Agents resend the whole history, so (key, system prompt, first user message) names one conversation
    # on every turn; the key keeps two users' identical first prompts apart.
    h = hashlib.blake2b(digest_size=12)
    h.update((key or "").encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    for sys_part in req.system:
        h.update(sys_part.text[:4000].encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    for m in req.messages:
        if m.role == "user":
            for p in m.parts:
                if isinstance(p, TextPart):
                    h.update(p.text[:4000].encode("utf-8", "surrogatepass"))
            break
    return "h-" + h.hexdigest()


def session_identity(headers: Mapping[str, str], req: CanonicalRequest, key: str | None = None) -> str:
    """The task-session a request belongs to; the one rule for HTTP and Kafka requests alike.

    In order: our ``x-router-session``; Claude Code's ``X-Claude-Code-Session-Id``, then the session in
    its ``metadata.user_id`` JSON; Codex's ``session-id`` header, then its ``prompt_cache_key``;
    opencode's ``x-opencode-session``; ``thread-id`` / ``x-session-id``; else a hash of the conversation
    and the caller's key. ``headers`` must have lower-case names (``client_detection.lower_case_headers``).
    """
    for name in (ROUTER_SESSION_HEADER, CLAUDE_CODE_SESSION_HEADER):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:_MAX_ID]
    claude_code = _claude_code_user_id(req)
    if claude_code:
        return claude_code[:_MAX_ID]
    value = headers.get(CODEX_SESSION_HEADER)
    if value and value.strip():
        return value.strip()[:_MAX_ID]
    cache_key = req.extra.get("prompt_cache_key") if req.extra else None
    if isinstance(cache_key, str) and cache_key.strip():
        return cache_key.strip()[:_MAX_ID]
    for name in (OPENCODE_SESSION_HEADER, *THREAD_HEADERS):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:_MAX_ID]
    return _conversation_hash(req, key)


@dataclass(slots=True)
class SessionState:
    session_id: str
    model: str = ""
    route: str = ""
    requests: int = 0
    cascade_level: int = 0
    failures: int = 0
    successes: int = 0
    escalation_pending: bool = False
    stuck: bool = False
    # Bumped on every outcome and switch, so cached decisions of the session stop matching.
    epoch: int = 0
    last_seen: float = 0.0
    last_decision_id: str = ""
    last_context: dict[str, float] | None = None
    last_arm: str = ""
    # Requests that arrived with failing tests in their recent history ("tests failing again").
    failing_tests_seen: int = 0
    last_stage: str = ""
    # The state keys of this session's subagents (Claude Code's Task tool), newest last: each has its
    # own model and conversation, and this session's outcomes are theirs too.
    subagents: list[str] = field(default_factory=list)


MAX_SUBAGENTS = 64  # per session: the oldest are forgotten beyond it (Claude Code caps concurrency at 20)


def subagent_key(session_id: str, subagent: str) -> str:
    """The state key of a subagent of ``session_id`` (decisions still carry ``session_id`` itself)."""
    return f"{session_id}\x1f{subagent}"


class SessionStore:
    """Bounded (LRU) sessions that expire ``ttl_s`` after their last request. Clock injected for tests."""

    def __init__(self, max_sessions: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[str, SessionState] = OrderedDict()
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.clock = clock

    def __len__(self) -> int:
        return len(self._items)

    def get(self, session_id: str) -> SessionState | None:
        s = self._items.get(session_id)
        if s is None:
            return None
        if self.clock() - s.last_seen > self.ttl_s:
            del self._items[session_id]
            return None
        return s

    def touch(self, session_id: str, key: str | None = None) -> SessionState:
        """The live session (created if new or expired), marked as just used. ``key``: where its state
        is kept when that is not ``session_id`` (a subagent's: ``subagent_key``)."""
        now = self.clock()
        key = key or session_id
        s = self.get(key)
        if s is None:
            s = SessionState(session_id)
            self._items[key] = s
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        s.last_seen = now
        return s

    def subagent(self, parent: SessionState, subagent: str) -> SessionState:
        """The state of ``parent``'s subagent (created if new), registered with the parent."""
        key = subagent_key(parent.session_id, subagent)
        if key not in parent.subagents:
            parent.subagents.append(key)
            del parent.subagents[:-MAX_SUBAGENTS]
        return self.touch(parent.session_id, key)


@dataclass(slots=True)
class SwitchVerdict:
    allowed: bool
    reason: str


def switch_verdict(
    f: Features,
    session: SessionState,
    target: str,
    catalog: Catalog,
    *,
    escalation: bool,
    expected_remaining: float,
) -> SwitchVerdict:
    """May ``session`` move from its model to ``target`` on this request?"""
    current = session.model
    if f.in_tool_loop:
        return SwitchVerdict(False, "inside a tool-call loop")
    why_not = catalog.can_serve(target, f)
    if why_not is not None:
        return SwitchVerdict(False, f"{target} cannot continue: {why_not}")
    if escalation:
        return SwitchVerdict(True, "escalation after a failed outcome")
    cur = catalog.get(current)
    tgt = catalog.get(target)
    if cur is None or tgt is None:
        return SwitchVerdict(True, "current model no longer configured")
    tokens = f.input_tokens
    loss = tokens * (cur.price_in - cur.price_cached) / 1e6
    out = min(f.max_tokens or catalog.expected_output, catalog.expected_output)
    # Steady state on either side: the prompt is cached, the output is paid in full.
    per_cur = (tokens * cur.price_cached + out * cur.price_out) / 1e6
    per_tgt = (tokens * tgt.price_cached + out * tgt.price_out) / 1e6
    remaining = expected_remaining or max(1.0, float(session.requests))
    saving = (per_cur - per_tgt) * remaining
    if saving <= loss:
        return SwitchVerdict(False, f"saving ${saving:.4f} over ~{remaining:g} requests <= cache loss ${loss:.4f}")
    return SwitchVerdict(True, f"saving ${saving:.4f} over ~{remaining:g} requests > cache loss ${loss:.4f}")
