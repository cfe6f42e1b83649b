"""Request features: what the router knows about a request before it picks a model.

``Features`` is what the routing patterns and the bandit read; ``streams.routing.extractor`` fills it
from a canonical request and its headers. The vocabularies here (task types, agent stages, clients,
tiers) are shared by the classifier, the patterns and the bandit's priors.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field, fields
from typing import Any

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
CLIENTS: tuple[str, ...] = ("claude_code", "codex", "gemini_cli", "aider", "cursor", "sdk", "unknown")
TIERS: tuple[str, ...] = ("frontier", "strong", "standard", "cheap")
# Rank of each tier, cheapest first: how policies and the bandit's task prior compare tiers.
TIER_RANK: dict[str, int] = {t: len(TIERS) - 1 - i for i, t in enumerate(TIERS)}
LATENCIES: tuple[str, ...] = ("interactive", "batch")


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
    # The subagent of the session that sent it ("" for the main thread): ``client_detection.subagent_of``.
    subagent: str = ""
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


__all__ = [
    "CLIENTS",
    "LATENCIES",
    "STAGES",
    "TASK_TYPES",
    "TIERS",
    "TIER_RANK",
    "TEXT_BUCKETS",
    "TEXT_SCAN",
    "Features",
    "text_features",
]
