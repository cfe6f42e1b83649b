"""Text and tool arguments that read like an agent's: a coding vocabulary, and arguments built from
a tool's JSON schema that do what the prompt (or a script's edit) asks."""

from __future__ import annotations

import json
import random
from typing import Any

from streams.providers.sim.edits import Edit, argument_hints, patch, shell_command
from streams.providers.sim.intent import Intent, action_of
from streams.providers.sim.plan import ToolSpec

# A coding-flavoured vocabulary: replies read like an agent's status text, not lorem ipsum.
_VOCABULARY = """the function module test tests change file code update refactor handler request response parser
    config value error fix patch import class method return argument call loop cache index query
    helper case branch check type string list dict field schema router stream event token model
    input output result state session path line commit build run pass fail suite assert mock fixture
    async await client server timeout retry limit budget metric trace log debug edge first next then
    now also so we it this that which should will can may must simple small clean safe"""
_WORDS: tuple[str, ...] = tuple(_VOCABULARY.split())


def sentence_tokens(rng: random.Random, n: int) -> list[str]:
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


def dump_args(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))


def edit_from_prompt(intent: Intent, rng: random.Random) -> Edit:
    """The edit a prompt asks for: a new file, or a line added to the file it names."""
    line = "".join(sentence_tokens(rng, 8))
    return Edit(intent.path or "NOTES.md", line, None if intent.create or not intent.path else "")


def _command_for(intent: Intent) -> str | None:
    if intent.action == "read" and intent.path:
        return f"cat {intent.path}"
    if intent.action == "search":
        return "ls -R" if not intent.path else f"ls -la {intent.path}"
    if intent.action == "run" and intent.words & {"test", "tests", "pytest"}:
        return "pytest -q"
    return None


def arguments_for(tool: ToolSpec, intent: Intent, edit: Edit | None, rng: random.Random) -> Any:
    """Arguments (a custom tool's input) that do what the prompt or script asks."""
    action = action_of(tool.name)
    is_patch = tool.name == "apply_patch"
    if tool.custom:
        if edit is not None and (is_patch or action == "edit"):
            return patch(edit)
        return _command_for(intent) or "".join(sentence_tokens(rng, 6))  # freeform: a line of text
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
    arguments = value_for(tool.schema, "", rng, 0, hints)
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


def value_for(schema: Any, name: str, rng: random.Random, depth: int, hints: dict[str, str] | None = None) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return _string_for(name, {}, rng, hints)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(combinator) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return value_for(options[0], name, rng, depth + 1, hints)
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
        return {k: value_for(props.get(k, {}), k, rng, depth + 1, hints) for k in keys}
    if typ == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [value_for(schema.get("items", {}), name, rng, depth + 1, hints) for _ in range(min(count, 3))]
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
