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
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.providers.sim.config import SimConfig
from streams.providers.sim.edits import Edit, argument_hints, patch, shell_command
from streams.providers.sim.intent import Intent, action_of, read_intent, tool_for, user_words

StopKind = Literal["end", "tool_use", "max_tokens"]
ToolChoice = str  # "auto" | "none" | "required" | "tool:<name>"

PASS_MARKER = "TESTS PASSED"
FAIL_MARKER = "TESTS FAILED"

# A coding-flavoured vocabulary: replies read like an agent's status text, not lorem ipsum.
_VOCABULARY = """the function module test tests change file code update refactor handler request response parser
    config value error fix patch import class method return argument call loop cache index query
    helper case branch check type string list dict field schema router stream event token model
    input output result state session path line commit build run pass fail suite assert mock fixture
    async await client server timeout retry limit budget metric trace log debug edge first next then
    now also so we it this that which should will can may must simple small clean safe"""
_WORDS: tuple[str, ...] = tuple(_VOCABULARY.split())
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


@dataclass(slots=True)
class ToolSpec:
    name: str
    schema: dict[str, Any]
    custom: bool = False  # an OpenAI custom tool: called with free text ``input``, not JSON arguments


@dataclass(slots=True)
class SimRequest:
    """The dialect-independent facts the behaviour needs."""

    dialect: str
    model: str
    stream: bool = False
    last_user_text: str = ""
    after_tool_result: bool = False
    tool_result_text: str = ""
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_allowed: bool = True
    max_tokens: int | None = None
    thinking: bool = False
    # Structured output asked for (e.g. Gemini's responseMimeType application/json): the reply is a
    # JSON value of this schema ({} for any JSON).
    json_schema: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolCall:
    id: str  # stable hex; each dialect adds its own prefix
    name: str
    arguments: str  # JSON text; a custom tool's raw input
    custom: bool = False


@dataclass(slots=True)
class Plan:
    thinking: list[str]
    text: list[str]  # output tokens, concatenated to form the text
    tool_calls: list[ToolCall]
    stop: StopKind
    output_tokens: int

    @property
    def text_str(self) -> str:
        return "".join(self.text)

    @property
    def thinking_str(self) -> str:
        return "".join(self.thinking)


def arg_tokens(arguments: str) -> int:
    return max(1, (len(arguments) + 3) // 4)


def _sentence_tokens(rng: random.Random, n: int) -> list[str]:
    """``n`` word tokens forming capitalised sentences; each token carries its leading space."""
    out: list[str] = []
    until_stop = rng.randint(6, 14)
    start = True
    for i in range(n):
        w = rng.choice(_WORDS)
        if start:
            w = w.capitalize()
            start = False
        until_stop -= 1
        if until_stop == 0 or i == n - 1:
            w += "."
            until_stop = rng.randint(6, 14)
            start = True
        out.append(w if i == 0 else " " + w)
    return out


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
            text = _split_text(json.dumps(_value_for(req.json_schema or {"type": "object"}, "", rng(), 0)))
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
        body = _sentence_tokens(rng, max(1, n - len(lead_tokens)))
        tokens = lead_tokens + ([" " + body[0]] + body[1:] if lead_tokens else body)
        if len(self._text_cache) >= _CACHE_LIMIT:
            self._text_cache.clear()
        self._text_cache[key] = tokens
        return tokens

    def _thinking(self, req: SimRequest, rng: random.Random) -> list[str]:
        return _split_text("Let me think about the request.") + [" " + w for w in _sentence_tokens(rng, 10)]

    def _tool_calls(self, req: SimRequest, script: dict[str, Any], rng: random.Random) -> list[ToolCall]:
        """The calls of this turn: scripted ones, else the tool the prompt asks for (none: answer in text)."""
        scripted = list(script.get("tool_calls") or [])
        edit = Edit.from_script(script["edit"]) if script.get("edit") is not None else None
        intent = read_intent(req.last_user_text) if req.tools else Intent(None, frozenset())
        if edit is None and intent.action == "edit" and req.tools:
            edit = _edit_from_prompt(intent, rng)
        calls = [self._call(req, i, str(c["name"]), c.get("input", c.get("arguments", {})), req.tools)
                 for i, c in enumerate(scripted)]  # fmt: skip
        if not calls and req.tools:
            tool = self._choose_tool(req, intent, edit if script.get("edit") is not None else None, rng)
            if tool is None:
                return []
            calls.append(self._call(req, 0, tool.name, _arguments_for(tool, intent, edit, rng), req.tools))
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
            calls.append(self._call(req, 1, extra.name, _arguments_for(extra, intent, edit, rng), req.tools))
        return calls if parallel else calls[:1]

    @staticmethod
    def _call(req: SimRequest, index: int, name: str, arguments: Any, tools: list[ToolSpec]) -> ToolCall:
        if not isinstance(arguments, dict | str):
            arguments = {}
        call_id = f"{_digest('call', req.model, req.last_user_text, str(index), name):016x}"
        custom = any(t.custom and t.name == name for t in tools)
        return ToolCall(call_id, name, _dump_args(arguments), custom)

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


def json_format_schema(fmt: Any) -> dict[str, Any] | None:
    """The schema of a structured-output request as the OpenAI and Anthropic APIs spell it (Chat's
    ``response_format``, Responses' ``text.format``, Anthropic's ``output_config.format``): the schema
    of ``json_schema`` (nested or flat), ``{}`` (any JSON) for ``json_object``, else None."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {}
    if fmt.get("type") != "json_schema":
        return None
    nested = fmt.get("json_schema")
    schema = (nested if isinstance(nested, dict) else fmt).get("schema")
    return schema if isinstance(schema, dict) else {}


_JSON_INSTRUCTION = "Respond with a single JSON object"
_SCHEMA_LEAD = "JSON schema: "


def json_instruction_schema(text: str) -> dict[str, Any] | None:
    """A model told in its prompt to answer with one JSON object (and which schema) does so: the schema
    named after "JSON schema: ", ``{}`` when none is, None when the prompt does not ask."""
    if _JSON_INSTRUCTION not in text:
        return None
    _, lead, rest = text.partition(_SCHEMA_LEAD)
    if lead:
        try:
            schema, _ = json.JSONDecoder().raw_decode(rest)
        except ValueError:
            return {}
        return schema if isinstance(schema, dict) else {}
    return {}


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


def _dump_args(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))


def _edit_from_prompt(intent: Intent, rng: random.Random) -> Edit:
    """The edit a prompt asks for: a new file, or a line added to the file it names."""
    line = "".join(_sentence_tokens(rng, 8))
    return Edit(intent.path or "NOTES.md", line, None if intent.create or not intent.path else "")


def _command_for(intent: Intent) -> str | None:
    if intent.action == "read" and intent.path:
        return f"cat {intent.path}"
    if intent.action == "search":
        return "ls -R" if not intent.path else f"ls -la {intent.path}"
    if intent.action == "run" and intent.words & {"test", "tests", "pytest"}:
        return "pytest -q"
    return None


def _arguments_for(tool: ToolSpec, intent: Intent, edit: Edit | None, rng: random.Random) -> Any:
    """Arguments (a custom tool's input) that do what the prompt or script asks."""
    action = action_of(tool.name)
    is_patch = tool.name == "apply_patch"
    if tool.custom:
        if edit is not None and (is_patch or action == "edit"):
            return patch(edit)
        return _command_for(intent) or "".join(_sentence_tokens(rng, 6))  # freeform: a line of text
    hints: dict[str, str] = {}
    if edit is not None and action == "run":
        hints["command"] = shell_command(edit)
    elif edit is not None and action == "edit":
        hints = argument_hints(edit)
        if is_patch:
            hints["input"] = patch(edit)
    else:
        command = _command_for(intent)
        if command:
            hints["command"] = command
        if intent.path:
            hints["path"] = intent.path
    arguments = _value_for(tool.schema, "", rng, 0, hints)
    return arguments if isinstance(arguments, dict) else {}  # function arguments are a JSON object


# -- arguments from a JSON schema ---------------------------------------------------------------------
_STRING_HINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("command", "cmd", "shell"), ("ls -la", "pytest -q", "git status", "cat README.md")),
    (("file_path", "filepath", "path", "file", "filename", "notebook_path"), ("README.md", "src/main.py")),
    (("dir", "directory", "cwd", "workdir"), (".",)),
    (("pattern", "glob", "regex"), ("TODO", "**/*.py")),
    (("url", "uri", "link"), ("https://example.com/docs",)),
    (("city", "location", "place"), ("Paris", "Berlin", "Tokyo")),
    (("email",), ("dev@example.com",)),
)


_HINT_GROUPS = {"command": _STRING_HINTS[0][0], "path": _STRING_HINTS[1][0]}


def _string_for(name: str, schema: dict[str, Any], rng: random.Random, hints: dict[str, str] | None = None) -> str:
    lname = name.lower()
    if hints:
        if lname in hints:
            return hints[lname]
        for group, keys in _HINT_GROUPS.items():
            if group in hints and (lname in keys or any(lname.endswith("_" + k) for k in keys)):
                return hints[group]
    fmt = schema.get("format")
    if fmt in ("uri", "url"):
        return "https://example.com/docs"
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    for keys, values in _STRING_HINTS:
        if lname in keys or any(lname.endswith("_" + k) for k in keys):
            return rng.choice(values)
    n = 2 if lname in ("name", "title", "id", "key") else 4
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _value_for(schema: Any, name: str, rng: random.Random, depth: int, hints: dict[str, str] | None = None) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return _string_for(name, {}, rng, hints)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(combinator) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _value_for(options[0], name, rng, depth + 1, hints)
    if "default" in schema:
        return schema["default"]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    if typ is None:
        typ = "object" if "properties" in schema else "string"
    if typ == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        required = [k for k in schema.get("required") or [] if isinstance(k, str)]
        # Required properties always; with none required, the first two so the call says something.
        keys = required or list(props)[:2]
        return {k: _value_for(props.get(k, {}), k, rng, depth + 1, hints) for k in keys}
    if typ == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [_value_for(schema.get("items", {}), name, rng, depth + 1, hints) for _ in range(min(count, 3))]
    if typ in ("integer", "number"):
        lo = _bound(schema, "minimum", "exclusiveMinimum", 1)
        hi = _bound(schema, "maximum", "exclusiveMaximum", lo + 99)  # 1..100 when unbounded: a score
        value = rng.randint(int(lo), max(int(lo), int(hi)))
        return value if typ == "integer" else float(value)
    if typ == "boolean":
        return False  # the safe choice for flags like run_in_background or force
    if typ == "null":
        return None
    return _string_for(name, schema, rng, hints)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, default: float) -> float:
    for key in (inclusive, exclusive):
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return default
