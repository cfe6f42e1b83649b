"""What a simulated model "does" with a request, independently of the wire dialect.

Each wire module turns its request body into a ``SimRequest``; ``Behaviour.plan`` decides the reply
(thinking, text, tool calls, stop reason) and each wire module renders that ``Plan`` in its own format.
Tools are called when a script says so (``tool_calls``, ``edit``) or the last user turn asks for an
action one of the offered tools does (``intent``); otherwise, and after a tool result, the answer is text.
Everything is a pure function of (model, request, script, skill), so the same conversation gets the
same answer in every dialect: the gateway's conformance tests can compare them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

from streams.providers.sim.arguments import arguments_for, dump_args, edit_from_prompt, sentence_tokens, value_for
from streams.providers.sim.config import SimConfig
from streams.providers.sim.edits import Edit
from streams.providers.sim.intent import Intent, read_intent, tool_for, user_words
from streams.providers.sim.plan import Plan, SimRequest, StopKind, ToolCall, ToolChoice, ToolSpec, arg_tokens

__all__ = [  # the request and plan types are re-exported: the wire modules and tests read them here too
    "FAIL_MARKER", "PASS_MARKER", "Behaviour", "Plan", "SimRequest", "StopKind", "ToolCall", "ToolChoice",
    "ToolSpec", "arg_tokens", "solves", "task_type_of",
]

PASS_MARKER = "TESTS PASSED"
FAIL_MARKER = "TESTS FAILED"
_CACHE_LIMIT = 4096


def _digest(*parts: str) -> int:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "big")


def _unit(*parts: str) -> float:
    """A stable pseudo-uniform number in [0, 1) for the given strings."""
    return _digest(*parts) / 2.0**64


def task_type_of(task_key: str | None) -> str | None:
    """The task type named by a task id's prefix (``"debugging:123"`` -> ``"debugging"``), else None."""
    if not task_key:
        return None
    head, sep, _ = task_key.partition(":")
    if not sep:
        return None
    return head.strip().lower() or None


def solves(model: str, task_key: str, skill: float) -> bool:
    """Would ``model`` with this ``skill`` solve task ``task_key``? Stable for a (model, task).

    The draw mixes a per-task difficulty shared by every model with a per-(model, task) term, then maps
    the sum back to a uniform number: P(success) equals ``skill``, a stronger model tends to solve the
    tasks a weaker one solves (hard tasks are hard for everyone), and raising a model's skill only ever
    turns failures into successes.
    """
    s = _unit("task", task_key) + _unit("model-task", model, task_key)  # triangular on [0, 2)
    u = s * s / 2.0 if s <= 1.0 else 1.0 - (2.0 - s) ** 2 / 2.0  # its CDF: uniform on [0, 1)
    return u < skill


def _words(text: str, limit: int) -> list[str]:
    words = [w for w in "".join(c if c.isalnum() else " " for c in text[-400:]).split() if len(w) > 2]
    return words[-limit:]


class Behaviour:
    """Plans replies for one simulator; holds the live skill table (drift) and a small reply cache."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        # Per model: the skill of task types without an entry of their own ("default"), and the
        # per-task-type skills of models configured with a mapping.
        self.skills: dict[str, float] = {}
        self.task_skills: dict[str, dict[str, float]] = {}
        for name, skill in config.models.items():
            if isinstance(skill, Mapping):
                per_task = {str(k).lower(): float(v) for k, v in skill.items()}
                self.skills[name] = per_task.pop("default", config.default_skill)
                self.task_skills[name] = per_task
            else:
                self.skills[name] = float(skill)
        self._text_cache: dict[tuple[str, str, str, int], list[str]] = {}

    # -- skill -------------------------------------------------------------------------------------
    def skill_of(self, model: str, task_type: str | None = None) -> float:
        if task_type:
            per_task = self.task_skills.get(model)
            if per_task and task_type.lower() in per_task:
                return per_task[task_type.lower()]
        return self.skills.get(model, self.config.default_skill)

    def set_skill(self, model: str, skill: float, task_type: str | None = None) -> None:
        """Change a model's skill at run time (drift): for one task type, or its default."""
        if not 0.0 <= skill <= 1.0:
            raise ValueError("skill must be in [0, 1]")
        if task_type:
            self.task_skills.setdefault(model, {})[task_type.lower()] = skill
            self.skills.setdefault(model, self.config.default_skill)  # listed like a configured model
        else:
            self.skills[model] = skill

    def outcome(self, model: str, task: str, task_type: str | None = None) -> bool:
        """Does ``model`` solve ``task``? The task type (explicit, else the id's prefix) picks the skill."""
        return solves(model, task, self.skill_of(model, task_type or task_type_of(task)))

    # -- planning ----------------------------------------------------------------------------------
    def plan(
        self,
        req: SimRequest,
        script: dict[str, Any] | None = None,
        task: str | None = None,
        task_type: str | None = None,
    ) -> Plan:
        script = script if script is not None else self.config.script

        def rng() -> random.Random:  # built only when needed: the plain-text path stays cheap
            return random.Random(_digest("plan", req.model, req.last_user_text, req.tool_result_text))

        thinking = self._thinking(req, rng()) if req.thinking and self.config.thinking else []

        calls: list[ToolCall] = []
        may_call = not req.after_tool_result and req.tool_choice != "none"
        if may_call and not (script is not None and script.get("tool_calls") == []):
            calls = self._tool_calls(req, script or {}, rng())

        scripted_text = script.get("text") if script else None
        if calls:
            if isinstance(scripted_text, str):
                text = _split_text(scripted_text)
            elif self.config.tool_preamble:
                text = _split_text(f"I'll use {calls[0].name} to look into this.")
            else:
                text = []
            out = len(thinking) + len(text) + sum(arg_tokens(c.arguments) for c in calls)
            return Plan(thinking, text, calls, "tool_use", out)

        if isinstance(scripted_text, str):
            text = _split_text(scripted_text)
        elif req.json_schema is not None:
            text = _split_text(json.dumps(value_for(req.json_schema or {"type": "object"}, "", rng(), 0)))
        else:
            n = int(script.get("reply_tokens", 0)) if script else 0
            text = self._reply(req, n or self.config.reply_tokens)
        if task is not None:
            marker = PASS_MARKER if self.outcome(req.model, task, task_type) else FAIL_MARKER
            # First, so that a max_tokens cut never hides the verdict.
            text = [marker + "."] + ([" " + text[0].lstrip()] + text[1:] if text else [])
        stop: StopKind = "end"
        budget = req.max_tokens
        if budget is not None and len(thinking) + len(text) > budget:
            keep = max(0, budget - len(thinking))
            thinking, text = thinking[:budget], text[:keep]
            stop = "max_tokens"
        return Plan(thinking, text, [], stop, len(thinking) + len(text))

    def _reply(self, req: SimRequest, target: int) -> list[str]:
        key = (req.model, req.last_user_text, req.tool_result_text, target)
        cached = self._text_cache.get(key)
        if cached is not None:
            return cached
        rng = random.Random(_digest("text", *key[:3], str(target)))
        n = max(1, round(target * (0.75 + 0.5 * rng.random())))
        topic = _words(user_words(req.last_user_text), 3)
        lead = "Done: checked the tool output." if req.after_tool_result else "Looking at " + " ".join(topic) + "."
        lead_tokens = _split_text(lead) if (topic or req.after_tool_result) else []
        body = sentence_tokens(rng, max(1, n - len(lead_tokens)))
        tokens = lead_tokens + ([" " + body[0]] + body[1:] if lead_tokens else body)
        if len(self._text_cache) >= _CACHE_LIMIT:
            self._text_cache.clear()
        self._text_cache[key] = tokens
        return tokens

    def _thinking(self, req: SimRequest, rng: random.Random) -> list[str]:
        return _split_text("Let me think about the request.") + [" " + w for w in sentence_tokens(rng, 10)]

    def _tool_calls(self, req: SimRequest, script: dict[str, Any], rng: random.Random) -> list[ToolCall]:
        """The calls of this turn: scripted ones, else the tool the prompt asks for (none: answer in text)."""
        scripted = list(script.get("tool_calls") or [])
        edit = Edit.from_script(script["edit"]) if script.get("edit") is not None else None
        intent = read_intent(req.last_user_text) if req.tools else Intent(None, frozenset())
        if edit is None and intent.action == "edit" and req.tools:
            edit = edit_from_prompt(intent, rng)
        calls = [self._call(req, i, str(c["name"]), c.get("input", c.get("arguments", {})), req.tools)
                 for i, c in enumerate(scripted)]  # fmt: skip
        if not calls and req.tools:
            tool = self._choose_tool(req, intent, edit if script.get("edit") is not None else None, rng)
            if tool is None:
                return []
            calls.append(self._call(req, 0, tool.name, arguments_for(tool, intent, edit, rng), req.tools))
        if "parallel" in script:
            parallel = bool(script["parallel"])
        else:
            rate = self.config.parallel_rate
            parallel = len(scripted) > 1 or (rate > 0 and bool(req.tools) and rng.random() < rate)
        parallel = parallel and req.parallel_allowed
        if parallel and len(calls) == 1 and req.tools:
            # "parallel" with one call: add a second one, on another tool when there is one.
            others = [t for t in req.tools if t.name != calls[0].name] or list(req.tools)
            extra = rng.choice(others)
            calls.append(self._call(req, 1, extra.name, arguments_for(extra, intent, edit, rng), req.tools))
        return calls if parallel else calls[:1]

    @staticmethod
    def _call(req: SimRequest, index: int, name: str, arguments: Any, tools: list[ToolSpec]) -> ToolCall:
        if not isinstance(arguments, dict | str):
            arguments = {}
        call_id = f"{_digest('call', req.model, req.last_user_text, str(index), name):016x}"
        custom = any(t.custom and t.name == name for t in tools)
        return ToolCall(call_id, name, dump_args(arguments), custom)

    def _choose_tool(
        self, req: SimRequest, intent: Intent, scripted_edit: Edit | None, rng: random.Random
    ) -> ToolSpec | None:
        if req.tool_choice.startswith("tool:"):
            name = req.tool_choice[5:]
            for t in req.tools:
                if t.name == name:
                    return t
        if scripted_edit is not None:
            intent = Intent("edit", intent.words, (scripted_edit.path,), scripted_edit.old is None)
        tool = tool_for(intent, req.tools)
        if tool is not None or req.tool_choice != "required":
            return tool
        # The API forces a call although the prompt asks for none: the model's favourite tool.
        by_name = {t.name: t for t in req.tools}
        for name in self.config.preferred_tools:
            if name in by_name:
                return by_name[name]
        return rng.choice(req.tools)


def _split_text(text: str) -> list[str]:
    """Split a text into word tokens that concatenate back to exactly ``text``."""
    if not text:
        return []
    out: list[str] = []
    start = 0
    for i in range(1, len(text)):
        if text[i] == " " and text[i - 1] != " ":
            out.append(text[start:i])
            start = i
    out.append(text[start:])
    return out


