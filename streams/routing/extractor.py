"""From a canonical request and its headers to ``Features``.

Everything here is cheap on purpose (the whole decision has a 1 ms p99 budget on a 76 KB Claude Code
request): sizes come from ``len`` of text parts (chars / 4, no tokenizer), text scans run on bounded
slices of the most recent messages, and the tool-schema size is memoised per tool set.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from streams.routing.agent_stage import read_stage
from streams.routing.client_detection import detect_client, lower_case_headers, subagent_of
from streams.routing.features import LATENCIES, TASK_TYPES, TEXT_SCAN, TIERS, Features, text_features
from streams.translation.canonical import (
    CanonicalRequest,
    DocumentPart,
    ImagePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 4
ENTROPY_SAMPLE = 1024  # chars of the last user text used for the entropy estimate
TASK_TEXT_LIMIT = 2000  # chars of the last user text handed to the classifier
_FILE_RE = re.compile(
    r"[\w./-]+\.(?:py|js|ts|tsx|jsx|go|rs|java|kt|c|cc|cpp|h|hpp|rb|php|cs|swift|"
    r"scala|sh|sql|yaml|yml|toml|json|md|html|css|vue|svelte)\b"
)


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
        h = lower_case_headers(headers)
        f = Features(dialect=req.dialect, requested_model=requested_model or req.model, stream=req.stream)
        f.client, f.client_version = detect_client(h, req)
        f.subagent = subagent_of(h, req)
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
                match p:
                    case TextPart():
                        text = p.text
                        hist_chars += len(text)
                        if role == "system":
                            sys_chars += len(text)
                        elif role == "user" and not _is_reminder(text):
                            last_user_text = text
                    case ToolCallPart():
                        tools_used += 1
                        hist_chars += len(p.arguments) + len(p.name)
                    case ToolResultPart():
                        if p.is_error:
                            tool_errors += 1
                        for c in p.content:
                            if isinstance(c, TextPart):
                                hist_chars += len(c.text)
                            elif isinstance(c, ImagePart):
                                has_images = True
                                hist_chars += 1600 * CHARS_PER_TOKEN // 4
                    case ThinkingPart():
                        hist_chars += len(p.text)
                        if p.signature or p.redacted:
                            signed = True
                    case ImagePart():
                        has_images = True
                        hist_chars += 1600 * CHARS_PER_TOKEN // 4
                    case DocumentPart():
                        hist_chars += len(p.data or "") // 2
            last_part = m.parts[-1] if m.parts else None
            if role == "user" and isinstance(last_part, TextPart) and not _is_reminder(last_part.text):
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

        read_stage(f, messages, files)
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
