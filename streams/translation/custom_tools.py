"""OpenAI custom (freeform) tools, such as Codex's ``apply_patch``, carried to dialects without them.

A custom tool takes free text (optionally in a grammar) instead of JSON arguments. Canonically it is a
function of one string argument, ``input``, with the grammar in its description (bounded), so every
dialect can offer it; a call of it carries ``{"input": <text>}`` as its arguments. The OpenAI
Responses dialect turns such calls back into ``custom_tool_call`` items with the raw ``input``,
whole or streamed (``InputStream``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from streams.translation.canonical import CustomTool, Tool

INPUT = "input"
# Codex's apply_patch grammar is ~1 KB; a huge grammar would crowd out the conversation.
MAX_GRAMMAR_CHARS = 8000

INPUT_OPEN = '{"input":"'  # a custom call's arguments are this, the JSON-escaped input, INPUT_CLOSE
INPUT_CLOSE = '"}'
_PREFIX_RE = re.compile(r'\s*\{\s*"input"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def custom_tool(name: str, description: str, syntax: str | None, definition: str) -> Tool:
    """The canonical tool for a custom tool: its function form, with the client's declaration kept."""
    spec = CustomTool(description=description, syntax=syntax, definition=definition)
    return Tool(
        name=name,
        description=_function_description(spec),
        parameters={
            "type": "object",
            "properties": {INPUT: {"type": "string", "description": "The tool's whole input, as plain text."}},
            "required": [INPUT],
        },
        custom=spec,
    )


def _function_description(spec: CustomTool) -> str:
    lead = spec.description.strip()
    how = f"Put the tool's whole input, as plain text, in the `{INPUT}` string argument."
    parts = [lead, how] if lead else [how]
    if spec.syntax is not None and spec.definition:
        grammar = spec.definition
        if len(grammar) > MAX_GRAMMAR_CHARS:
            grammar = grammar[:MAX_GRAMMAR_CHARS] + "\n... (grammar truncated)"
        parts.append(f"The input must match this {spec.syntax} grammar:\n{grammar}")
    return "\n\n".join(parts)


def custom_names(tools: Iterable[Tool]) -> frozenset[str]:
    return frozenset(t.name for t in tools if t.custom is not None)


def input_fragment(text: str) -> str:
    """Input text as it reads inside the JSON string of a custom call's arguments."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def wrap_input(text: str) -> str:
    """A custom call's raw input as canonical function arguments."""
    return INPUT_OPEN + input_fragment(text) + INPUT_CLOSE


def unwrap_input(arguments: str) -> str:
    """The raw input of a custom call made through its function form. A model that named the argument
    otherwise still meant its one string; arguments that are not a JSON object are the text itself."""
    try:
        value: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments
    if isinstance(value, dict):
        if isinstance(value.get(INPUT), str):
            return str(value[INPUT])
        strings = [v for v in value.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
        return "" if not value else arguments
    return value if isinstance(value, str) else arguments


class InputStream:
    """Streams the ``input`` string out of function-call arguments as their JSON arrives, so a custom
    call relays its text as it comes. Arguments of any other shape give nothing here; the caller then
    sends the whole input (``unwrap_input``) when the call ends."""

    __slots__ = ("_pending", "_state")

    def __init__(self) -> None:
        self._pending = ""  # arguments received but not decoded yet
        self._state = "prefix"  # prefix | string | done | off

    def feed(self, fragment: str) -> str:
        """The input text the fragment completes (may be empty)."""
        if self._state in ("done", "off"):
            return ""
        self._pending += fragment
        if self._state == "prefix":
            m = _PREFIX_RE.match(self._pending)
            if m is None:
                compact = re.sub(r"\s+", "", self._pending)
                if not INPUT_OPEN.startswith(compact):
                    self._state = "off"
                return ""
            self._state = "string"
            self._pending = self._pending[m.end() :]
        text, used = self._decode(self._pending)
        self._pending = self._pending[used:]
        return text

    def _decode(self, s: str) -> tuple[str, int]:
        """Decode the JSON string body in ``s`` up to its closing quote or the last complete escape."""
        out: list[str] = []
        i, n = 0, len(s)
        while i < n:
            c = s[i]
            if c == '"':
                self._state = "done"
                return "".join(out), n
            if c != "\\":
                j = i
                while j < n and s[j] not in '"\\':
                    j += 1
                out.append(s[i:j])
                i = j
                continue
            if i + 1 >= n:
                break
            e = s[i + 1]
            if e != "u":
                if e not in _ESCAPES:
                    self._state = "off"
                    break
                out.append(_ESCAPES[e])
                i += 2
                continue
            char, width = _unicode_escape(s, i)
            if width < 0:
                self._state = "off"
                break
            if width == 0:
                break
            out.append(char)
            i += width
        return "".join(out), i


def _unicode_escape(s: str, i: int) -> tuple[str, int]:
    """The character of the ``\\uXXXX`` escape (a surrogate pair takes two) at ``s[i]`` and its width;
    width 0 when it is not complete yet, -1 when it is not valid."""
    if i + 6 > len(s):
        return "", 0
    try:
        code = int(s[i + 2 : i + 6], 16)
    except ValueError:
        return "", -1
    if not 0xD800 <= code < 0xDC00:
        return chr(code), 6
    if i + 12 > len(s):
        return "", 0
    if s[i + 6 : i + 8] != "\\u":
        return "\ufffd", 6
    try:
        low = int(s[i + 8 : i + 12], 16)
    except ValueError:
        return "", -1
    if not 0xDC00 <= low < 0xE000:
        return "\ufffd", 6
    return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), 12
