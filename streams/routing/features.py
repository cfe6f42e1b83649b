"""Request features: what the router knows about a request before it picks a model.

Everything here is cheap on purpose (the whole decision has a 1 ms p99 budget on a 76 KB Claude Code
request): sizes come from ``len`` of text parts (chars / 4, no tokenizer), text scans run on bounded
slices of the most recent messages, and the tool-schema size is memoised per tool set.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams.translation.canonical import (
    CanonicalRequest,
    DocumentPart,
    ImagePart,
    Message,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

TASK_TYPES: tuple[str, ...] = (
    "planning",
    "implementation",
    "test_writing",
    "debugging",
    "search",
    "chat",
    "background",
)
STAGES: tuple[str, ...] = ("start", "chat", "exploring", "editing", "testing", "failing_tests", "stuck")
CLIENTS: tuple[str, ...] = ("claude_code", "codex", "aider", "cursor", "sdk", "unknown")
TIERS: tuple[str, ...] = ("frontier", "strong", "standard", "cheap")
# Rank of each tier, cheapest first: how policies and the bandit's task prior compare tiers.
TIER_RANK: dict[str, int] = {t: len(TIERS) - 1 - i for i, t in enumerate(TIERS)}
LATENCIES: tuple[str, ...] = ("interactive", "batch")

CHARS_PER_TOKEN = 4
RECENT_MESSAGES = 12  # how far back stage detection looks
ENTROPY_SAMPLE = 1024  # chars of the last user text used for the entropy estimate
RESULT_SCAN = 4096  # chars of the tail of a tool result scanned for test failures
TASK_TEXT_LIMIT = 2000  # chars of the last user text handed to the classifier
LOOP_REPEATS = 3  # the same tool call this many times in the recent window means "stuck"

_READ_TOOLS = frozenset(
    {
        "read",
        "grep",
        "glob",
        "ls",
        "view",
        "view_image",
        "search",
        "find",
        "list_files",
        "read_file",
        "webfetch",
        "web_fetch",
        "websearch",
        "web_search",
        "notebookread",
        "codebase_search",
    }
)
_EDIT_TOOLS = frozenset(
    {
        "edit",
        "write",
        "multiedit",
        "notebookedit",
        "apply_patch",
        "str_replace",
        "str_replace_editor",
        "create_file",
        "write_file",
        "edit_file",
        "replace",
    }
)
_SHELL_TOOLS = frozenset({"bash", "exec_command", "shell", "run_command", "terminal", "local_shell", "powershell"})
_TEST_CMD = re.compile(
    r"\b(pytest|py\.test|unittest|tox|nox|jest|vitest|mocha|go test|cargo test|npm (?:run )?test|"
    r"yarn test|pnpm test|make test|mvn test|gradle test|rspec|phpunit|ctest|dotnet test)\b"
)
_READ_CMD = re.compile(r"^\s*(cat|less|head|tail|ls|find|grep|rg|sed -n|tree|git (?:log|show|diff|status))\b")
_EDIT_CMD = re.compile(r"(apply_patch|\bsed -i\b|>\s*\S+\.\w+|\btee\b|cat\s*<<)")
# Failures a test runner prints (pytest, unittest, jest/vitest, go, cargo, rspec, phpunit).
_TEST_FAIL_RE = re.compile(
    r"(\b\d+ failed\b|^FAILED |\bFAILURES\b|^ERROR: test|\bAssertionError\b|^--- FAIL|test result: FAILED|"
    r"\bTests?: +\d+ failed|\d+ examples?, [1-9]\d* failures?|^FAILURES!|\bpanicked at\b|^FAIL\s)",
    re.MULTILINE,
)
# Any failing command (used when the command was a test run).
_FAIL_RE = re.compile(
    r"(Traceback \(most recent call last\)|npm ERR!|\bERRORS?\b|Process exited with code [1-9]|"
    r"\bexit code [1-9]|\berror\[E\d+\]|SyntaxError|ModuleNotFoundError|ImportError)",
    re.MULTILINE,
)
_PASS_RE = re.compile(r"(\b\d+ passed\b|\bOK\b|^ok\s|test result: ok|\bPASS\b|Tests: +\d+ passed)", re.MULTILINE)
_FILE_RE = re.compile(
    r"[\w./-]+\.(?:py|js|ts|tsx|jsx|go|rs|java|kt|c|cc|cpp|h|hpp|rb|php|cs|swift|"
    r"scala|sh|sql|yaml|yml|toml|json|md|html|css|vue|svelte)\b"
)
_FILE_ARG_RE = re.compile(r'"(?:file_path|path|filename|notebook_path)"\s*:\s*"([^"]+)"')
_AIDER_MARKERS = ("Act as an expert software developer", "SEARCH/REPLACE", "*added these files to the chat*")


@dataclass(slots=True)
class Features:
    """Everything the policies look at. ``to_dict`` is for logs and route matching, ``vector`` for the bandit."""

    client: str = "unknown"
    client_version: str = ""
    dialect: str = "openai_chat"
    requested_model: str = ""
    input_tokens: int = 0
    system_tokens: int = 0
    tools_tokens: int = 0
    history_tokens: int = 0
    last_user_tokens: int = 0
    prompt_entropy: float = 0.0
    n_messages: int = 0
    conversation_depth: int = 0
    n_files: int = 0
    n_code_blocks: int = 0
    tools_offered: int = 0
    tools_used: int = 0
    tool_errors: int = 0
    last_tool: str = ""
    stage: str = "start"
    loop_repeats: int = 0
    in_tool_loop: bool = False
    thinking_requested: bool = False
    thinking_budget: int = 0
    effort: str = ""
    signed_thinking: bool = False
    has_images: bool = False
    max_tokens: int = 0
    stream: bool = False
    task: str = "chat"
    task_confidence: float = 0.0
    task_source: str = "none"
    hint_task: str = ""
    hint_tier: str = ""
    hint_max_cost_usd: float = 0.0
    hint_latency: str = ""
    background: bool = False
    language: str = ""  # the most named source-file extension in the current turn (py, ts, go ...)
    # The last real user text (not sent to logs; the classifier reads it).
    task_text: str = field(default="", repr=False)
    # Its hashed n-grams (``text_features``), memoised per turn by the extractor; None: not computed.
    text: dict[str, float] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-able, without the prompt text (logs must not carry content)."""
        return {name: getattr(self, name) for name in _LOG_FIELDS}

    def vector(self) -> dict[str, float]:
        """Numeric and one-hot context for the bandit; scaled to roughly [0, 1] so no feature dominates."""
        v: dict[str, float] = {
            "bias": 1.0,
            "log_input_tokens": math.log1p(self.input_tokens) / 12.0,
            "log_last_user_tokens": math.log1p(self.last_user_tokens) / 10.0,
            "prompt_entropy": self.prompt_entropy / 10.0,
            "log_depth": math.log1p(self.conversation_depth) / 4.0,
            "log_tools_offered": math.log1p(self.tools_offered) / 4.0,
            "log_tools_used": math.log1p(self.tools_used) / 5.0,
            "log_files": math.log1p(self.n_files) / 4.0,
            "log_code_blocks": math.log1p(self.n_code_blocks) / 4.0,
            "tool_errors": min(self.tool_errors, 5) / 5.0,
            "loop_repeats": min(self.loop_repeats, 5) / 5.0,
            "in_tool_loop": float(self.in_tool_loop),
            "thinking": float(self.thinking_requested),
            "has_images": float(self.has_images),
            "background": float(self.background),
            "batch": float(self.hint_latency == "batch"),
            "task_confidence": self.task_confidence,
        }
        v["stage=" + self.stage] = 1.0
        v["task=" + self.task] = 1.0
        v["client=" + self.client] = 1.0
        if self.hint_tier:
            v["hint_tier=" + self.hint_tier] = 1.0
        if self.language:
            v["language=" + self.language] = 1.0
        if self.task_text:
            v.update(self.text if self.text is not None else text_features(self.task_text))
        return v


_LOG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Features) if f.name not in ("task_text", "text"))

TEXT_BUCKETS = 4096  # hashed n-gram keys per text (the bandit folds them into its own text block)
TEXT_SCAN = 800  # chars of the current turn read for text features: what the user asks comes first
_TEXT_TOKEN = re.compile(r"[a-z0-9_]+|[^\sa-z0-9_]")


def text_features(text: str, *, buckets: int = TEXT_BUCKETS) -> dict[str, float]:
    """Hashed word unigrams and bigrams of ``text`` (first ``TEXT_SCAN`` chars), as ``t:<bucket>`` counts.

    What tells a hard prompt from an easy one within a task type: its words ("race", "flaky",
    "rename", "typo") and short phrases. One pass over a bounded slice, so it fits the decision
    budget on any request; crc32 keeps the buckets the same in every process. Punctuation and
    digits count as tokens: in math and code prompts they carry much of the difficulty.
    """
    tokens = _TEXT_TOKEN.findall(text[:TEXT_SCAN].lower())
    out: dict[str, float] = {}
    crc = zlib.crc32
    prev = ""
    for tok in tokens:
        for gram in (tok, prev + " " + tok) if prev else (tok,):
            key = "t:" + str(crc(gram.encode()) % buckets)
            out[key] = out.get(key, 0.0) + 1.0
        prev = tok
    return out


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased header names (a plain dict from a test and Starlette's Headers behave the same)."""
    return {k.lower(): v for k, v in headers.items()}


def detect_client(h: Mapping[str, str], req: CanonicalRequest | None = None) -> tuple[str, str]:
    """(client, version) from User-Agent and client-specific headers, else from the request's shape."""
    ua = h.get("user-agent", "")
    ual = ua.lower()
    if ual.startswith("claude-cli") or "x-claude-code-session-id" in h or "claude-code" in h.get("anthropic-beta", ""):
        return "claude_code", _version_after(ua, "/")
    if ual.startswith("codex") or h.get("originator", "").startswith("codex") or "x-codex-window-id" in h:
        return "codex", _version_after(ua, "/")
    if "aider" in ual:
        return "aider", _version_after(ua, "/")
    if "cursor" in ual:
        return "cursor", _version_after(ua, "/")
    if req is not None and _looks_like_aider(req):
        return "aider", ""
    if ual.startswith(("openai/", "anthropic/", "asyncopenai/", "asyncanthropic/")) or "x-stainless-lang" in h:
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


def bigram_entropy(text: str) -> float:
    """Shannon entropy (bits) of the character-bigram distribution of ``text`` (bounded by the caller)."""
    n = len(text) - 1
    if n <= 0:
        return 0.0
    counts: dict[str, int] = {}
    get = counts.get
    for i in range(n):
        bg = text[i : i + 2]
        counts[bg] = get(bg, 0) + 1
    inv = 1.0 / n
    log2 = math.log2
    return -sum(c * inv * log2(c * inv) for c in counts.values())


def _is_reminder(text: str) -> bool:
    # Claude Code and Codex inject context as tagged blocks; they are not the user's words.
    s = text.lstrip()[:40]
    return s.startswith(
        (
            "<system-reminder>",
            "<environment_context>",
            "<user_instructions>",
            "<skills_instructions>",
            "<permissions",
            "<command-",
            "<local-command",
        )
    )


def _result_text(part: ToolResultPart) -> str:
    if len(part.content) == 1 and isinstance(part.content[0], TextPart):
        return part.content[0].text
    return "\n".join(p.text for p in part.content if isinstance(p, TextPart))


def _classify_call(call: ToolCallPart) -> str:
    """read | edit | test | run for one tool call, from its name and (for shells) its command."""
    name = call.name.lower()
    if name in _EDIT_TOOLS:
        return "edit"
    if name in _READ_TOOLS:
        return "read"
    if name in _SHELL_TOOLS or "command" in call.arguments[:200] or '"cmd"' in call.arguments[:200]:
        args = call.arguments[:2000]
        if _TEST_CMD.search(args):
            return "test"
        cmd = _command_of(args)
        if _EDIT_CMD.search(cmd):
            return "edit"
        if _READ_CMD.search(cmd):
            return "read"
        return "run"
    if "edit" in name or "write" in name or "patch" in name:
        return "edit"
    if "read" in name or "search" in name or "find" in name or "list" in name:
        return "read"
    return "run"


_CMD_RE = re.compile(r'"(?:cmd|command)"\s*:\s*(?:\[\s*)?"((?:[^"\\]|\\.)*)"')


def _command_of(args: str) -> str:
    m = _CMD_RE.search(args)
    return m.group(1) if m else args


class FeatureExtractor:
    """Turns a canonical request plus headers into ``Features``. Holds only a small memo of tool-set sizes."""

    __slots__ = ("_tool_memo", "_text_memo", "_memo_size")

    def __init__(self, memo_size: int = 256) -> None:
        self._tool_memo: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        # A turn's text features, by its text: an agent's tool loop repeats the same turn many times.
        self._text_memo: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._memo_size = memo_size

    def __getstate__(self) -> dict[str, Any]:
        return {"memo_size": self._memo_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._tool_memo = OrderedDict()
        self._text_memo = OrderedDict()
        self._memo_size = state["memo_size"]

    def _text(self, text: str) -> dict[str, float]:
        memo = self._text_memo
        hit = memo.get(text)
        if hit is not None:
            memo.move_to_end(text)
            return hit
        out = memo[text] = text_features(text)
        if len(memo) > self._memo_size:
            memo.popitem(last=False)
        return out

    def extract(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str = "") -> Features:
        h = headers if isinstance(headers, dict) and all(k.islower() for k in headers) else header_map(headers)
        f = Features(dialect=req.dialect, requested_model=requested_model or req.model, stream=req.stream)
        f.client, f.client_version = detect_client(h, req)
        f.max_tokens = req.max_tokens or 0

        # Sizes: chars / 4. The system prompt may also arrive as role=system messages (Claude Code, aider).
        sys_chars = sum(len(p.text) for p in req.system)
        f.tools_offered = len(req.tools)
        f.tools_tokens = self._tools_tokens(req)
        hist_chars = 0
        depth = 0
        tools_used = 0
        tool_errors = 0
        code_blocks = 0
        has_images = False
        signed = False
        last_user_text = ""
        files: set[str] = set()
        messages = req.messages
        for m in messages:
            role = m.role
            for p in m.parts:
                t = p.type
                if t == "text":
                    text = p.text  # type: ignore[union-attr]
                    hist_chars += len(text)
                    if role == "system":
                        sys_chars += len(text)
                    elif role == "user" and not _is_reminder(text):
                        last_user_text = text
                elif t == "tool_call":
                    tools_used += 1
                    hist_chars += len(p.arguments) + len(p.name)  # type: ignore[union-attr]
                elif t == "tool_result":
                    if p.is_error:  # type: ignore[union-attr]
                        tool_errors += 1
                    for c in p.content:  # type: ignore[union-attr]
                        if isinstance(c, TextPart):
                            hist_chars += len(c.text)
                        elif isinstance(c, ImagePart):
                            has_images = True
                            hist_chars += 1600 * CHARS_PER_TOKEN // 4
                elif t == "thinking":
                    hist_chars += len(p.text)  # type: ignore[union-attr]
                    if p.signature or p.redacted:  # type: ignore[union-attr]
                        signed = True
                elif t == "image":
                    has_images = True
                    hist_chars += 1600 * CHARS_PER_TOKEN // 4
                elif t == "document":
                    hist_chars += len(p.data or "") // 2 if isinstance(p, DocumentPart) else 0
            if role == "user" and m.parts and m.parts[-1].type == "text" and not _is_reminder(m.parts[-1].text):  # type: ignore[union-attr]
                depth += 1
        sys_chars_msgs = sys_chars - sum(len(p.text) for p in req.system)
        f.system_tokens = sys_chars // CHARS_PER_TOKEN
        f.history_tokens = (hist_chars - sys_chars_msgs) // CHARS_PER_TOKEN
        f.input_tokens = f.system_tokens + f.history_tokens + f.tools_tokens
        f.n_messages = len(messages)
        f.conversation_depth = depth
        f.tools_used = tools_used
        f.tool_errors = tool_errors
        f.has_images = has_images
        f.signed_thinking = signed

        # The user's current words: entropy, files and code blocks are read from a bounded slice of them.
        f.last_user_tokens = len(last_user_text) // CHARS_PER_TOKEN
        sample = last_user_text[-ENTROPY_SAMPLE:]
        f.prompt_entropy = round(bigram_entropy(sample), 4)
        f.task_text = last_user_text[:TASK_TEXT_LIMIT]
        f.text = self._text(f.task_text[:TEXT_SCAN]) if f.task_text else None
        bounded = last_user_text[:20_000]
        code_blocks += bounded.count("```") // 2
        named = _FILE_RE.findall(bounded[:4000])
        files.update(named)
        if named:
            exts = [n.rsplit(".", 1)[-1] for n in named]
            f.language = max(sorted(set(exts)), key=exts.count)

        self._stage(f, messages, files)
        f.n_code_blocks = code_blocks
        f.n_files = len(files)

        th = req.thinking
        if th is not None and th.enabled:
            f.thinking_requested = True
            f.thinking_budget = th.budget_tokens or 0
            f.effort = th.effort or ""
        elif th is not None and th.effort:
            f.effort = th.effort
            f.thinking_requested = th.effort not in ("none", "minimal", "low")
        self._hints(f, h, req)
        return f

    def _tools_tokens(self, req: CanonicalRequest) -> int:
        if not req.tools:
            return 0
        # Tool sets are fixed per client version, so the schema size is computed once per set.
        key = tuple((t.name, len(t.description)) for t in req.tools)
        memo = self._tool_memo
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)
            return hit
        chars = sum(len(t.name) + len(t.description) + _schema_chars(t.parameters) for t in req.tools)
        tokens = chars // CHARS_PER_TOKEN
        memo[key] = tokens
        if len(memo) > self._memo_size:
            memo.popitem(last=False)
        return tokens

    def _stage(self, f: Features, messages: list[Message], files: set[str]) -> None:
        """The agent's stage, from the tool calls and results of the recent messages."""
        recent = messages[-RECENT_MESSAGES:]
        actions: list[str] = []
        call_keys: dict[tuple[str, str], int] = {}
        call_kind: dict[str, str] = {}
        last_test_result_fail: bool | None = None
        pending: set[str] = set()
        last_tool = ""
        for m in recent:
            for p in m.parts:
                if isinstance(p, ToolCallPart):
                    kind = _classify_call(p)
                    actions.append(kind)
                    call_kind[p.id] = kind
                    key = (p.name, p.arguments[:500])
                    call_keys[key] = call_keys.get(key, 0) + 1
                    last_tool = p.name
                    pending.add(p.id)
                    for path in _FILE_ARG_RE.findall(p.arguments[:1000]):
                        files.add(path)
                elif isinstance(p, ToolResultPart):
                    pending.discard(p.tool_call_id)
                    kind = call_kind.get(p.tool_call_id, "run")
                    if kind not in ("test", "run"):
                        continue
                    tail = _result_text(p)[-RESULT_SCAN:]
                    if _TEST_FAIL_RE.search(tail):
                        last_test_result_fail = True
                        actions.append("test")
                    elif kind == "test":
                        last_test_result_fail = p.is_error or bool(_FAIL_RE.search(tail))
                    elif _PASS_RE.search(tail) and _TEST_CMD.search(tail[:300]):
                        last_test_result_fail = False
        f.last_tool = last_tool
        f.loop_repeats = max(call_keys.values(), default=0)
        last = messages[-1] if messages else None
        f.in_tool_loop = bool(
            last is not None
            and (
                (last.role in ("user", "tool") and any(isinstance(p, ToolResultPart) for p in last.parts))
                or (last.role == "assistant" and any(isinstance(p, ToolCallPart) for p in last.parts))
            )
        )
        if f.tools_offered == 0 and not actions:
            f.stage = "chat"
        elif not actions:
            f.stage = "start"
        elif f.loop_repeats >= LOOP_REPEATS or _error_streak(messages) >= LOOP_REPEATS:
            f.stage = "stuck"
        elif last_test_result_fail:
            f.stage = "failing_tests"
        else:
            last_kind = actions[-1]
            if last_kind == "test" or (last_test_result_fail is False and last_kind == "run"):
                f.stage = "testing"
            elif last_kind == "edit" or (last_kind == "run" and "edit" in actions[-3:]):
                f.stage = "editing"
            else:
                f.stage = "exploring"

    def _hints(self, f: Features, h: Mapping[str, str], req: CanonicalRequest) -> None:
        task = h.get("x-router-task", "").strip().lower()
        if task in TASK_TYPES:
            f.hint_task = task
        tier = h.get("x-router-tier", "").strip().lower()
        if tier in TIERS:
            f.hint_tier = tier
        cost = h.get("x-router-max-cost-usd", "")
        if cost:
            try:
                value = float(cost)
                if value > 0 and math.isfinite(value):
                    f.hint_max_cost_usd = value
            except ValueError:
                pass
        latency = h.get("x-router-latency", "").strip().lower()
        if latency in LATENCIES:
            f.hint_latency = latency
        # Claude Code's own small calls (titles, summaries, topic checks) go to Haiku with no tools or a
        # small output budget: a background task, and the agent's own hint that a cheap model will do.
        model = f.requested_model.lower()
        if "haiku" in model:
            if not f.hint_tier:
                f.hint_tier = "cheap"
            if not req.tools or (req.max_tokens or 0) <= 4096:
                f.background = True
        elif not req.tools and 0 < (req.max_tokens or 0) <= 512 and f.conversation_depth <= 1 and f.client != "sdk":
            f.background = True
        if f.background and not f.hint_task:
            f.hint_task = "background"


def _schema_chars(schema: Any, budget: int = 20_000) -> int:
    """Approximate JSON size of a tool schema without serialising it (strings and keys, bounded)."""
    total = 0
    stack = [schema]
    while stack and total < budget:
        node = stack.pop()
        if isinstance(node, dict):
            total += 2 * len(node)
            for k, v in node.items():
                total += len(k) + 4
                stack.append(v)
        elif isinstance(node, list):
            total += 2 + len(node)
            stack.extend(node)
        elif isinstance(node, str):
            total += len(node) + 2
        else:
            total += 5
    return total


def _error_streak(messages: list[Message]) -> int:
    """Consecutive failing tool results at the end of the conversation."""
    streak = 0
    for m in reversed(messages[-RECENT_MESSAGES:]):
        results = [p for p in m.parts if isinstance(p, ToolResultPart)]
        if not results:
            if m.role == "assistant":
                continue
            break
        if all(p.is_error for p in results):
            streak += 1
        else:
            break
    return streak


__all__ = [
    "CLIENTS",
    "STAGES",
    "TASK_TYPES",
    "TIER_RANK",
    "Features",
    "FeatureExtractor",
    "bigram_entropy",
    "detect_client",
    "header_map",
    "text_features",
]
