"""What the last user turn asks for: a plain answer, or an action that one of the offered tools does.

Real models answer "say hello" or "what is 2+2" in text even when tools are offered, and reach for a
tool when asked to edit, create, run, read or search something, or when the prompt names a tool. The
simulator reads the same signals from the user's own words (agent context such as Claude Code's
``<system-reminder>`` blocks is not the user's request) and picks the tool a model would pick.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

Action = Literal["edit", "run", "read", "search"]
_Kind = Literal["edit", "create", "run", "read", "search"]

# Agent-supplied context inside user turns (Claude Code, Codex, gemini-cli): not what the user asked.
_CONTEXT = re.compile(r"<(system-reminder|environment_context|user_instructions|session_context)>.*?</\1>", re.S)
_WORD = re.compile(r"[a-z][a-z0-9]*")
# A file mentioned by name: ``hello.py``, ``src/app/main.rs``, ``./notes.md``.
_PATH = re.compile(r"(?<![\w/.-])((?:\.{0,2}/)?(?:[\w-]+/)*[\w-]+\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/-])")

# Verbs that ask for an action whatever follows them.
_STRONG: dict[str, Action] = {
    **dict.fromkeys(("edit", "modify", "fix", "refactor", "rename", "patch", "replace", "update", "change"), "edit"),
    **dict.fromkeys(("implement", "append", "insert"), "edit"),
    **dict.fromkeys(("run", "execute", "install", "build", "compile", "commit", "touch", "mkdir", "delete"), "run"),
    **dict.fromkeys(("remove", "rm", "ls", "pytest", "git", "npm"), "run"),
    **dict.fromkeys(("read", "open", "inspect", "cat"), "read"),
    **dict.fromkeys(("search", "find", "grep", "locate", "list"), "search"),
}
# Verbs that ask for an action only about a file ("write a poem" is a text answer).
_WEAK: dict[str, Action] = {
    **dict.fromkeys(("write", "add", "create", "make", "save"), "edit"),
    **dict.fromkeys(("show", "view", "print", "explain", "look", "check", "review", "does", "what"), "read"),
}
_CREATE = frozenset(("create", "new", "add", "touch", "save", "write"))

# Per action, the tool names real agents offer for it, best first (Claude Code, Codex, gemini-cli, ...).
_TOOLS_FOR: dict[_Kind, tuple[str, ...]] = {
    "edit": ("apply_patch", "edit", "edit_file", "replace", "str_replace_based_edit_tool", "write", "write_file"),
    "create": ("apply_patch", "write", "write_file", "create_file", "edit", "edit_file"),
    "run": ("bash", "exec_command", "shell", "run_shell_command", "run_terminal_cmd", "local_shell", "run_tests"),
    "read": ("read", "read_file", "read_many_files", "view", "cat"),
    "search": ("grep", "glob", "search_file_content", "list_directory", "ls", "find", "search"),
}
# Name parts that say what an unlisted tool does.
_NAME_PARTS: dict[str, Action] = {
    **dict.fromkeys(("edit", "write", "patch", "replace"), "edit"),
    **dict.fromkeys(("run", "exec", "shell", "bash", "command", "terminal", "test", "tests"), "run"),
    **dict.fromkeys(("read", "open", "cat"), "read"),
    **dict.fromkeys(("grep", "glob", "search", "find", "list", "ls"), "search"),
}
# Name parts too generic to count as the prompt naming a tool.
_GENERIC = frozenset(("get", "set", "tool", "tools", "file", "files", "the", "and", "for", "use", "new", "all", "data"))


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


@dataclass(frozen=True, slots=True)
class Intent:
    action: Action | None  # None: a question or chat, answered in text
    words: frozenset[str]
    paths: tuple[str, ...] = ()
    create: bool = False  # asks for a new file

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None


def user_words(text: str) -> str:
    """The user's own words of a turn, without the agent's context blocks."""
    return _CONTEXT.sub(" ", text).strip() if "<" in text else text.strip()


def read_intent(text: str) -> Intent:
    own = user_words(text)[-2000:]
    paths = tuple(dict.fromkeys(m.group(1) for m in _PATH.finditer(own)))
    tokens = _WORD.findall(own.lower())
    words = frozenset(tokens)
    about_file = bool(paths) or "file" in words or "files" in words
    action: Action | None = None
    for token in tokens:
        action = _STRONG.get(token) or (_WEAK.get(token) if about_file else None)
        if action is not None:
            break
    create = action == "edit" and about_file and bool(words & _CREATE)
    return Intent(action, words, paths, create)


def _name_parts(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [p for p in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if p]


def action_of(name: str) -> Action | None:
    """What a tool does, judged by its name."""
    lower = name.lower()
    for kind, names in _TOOLS_FOR.items():
        if lower in names:
            return "edit" if kind == "create" else kind
    for part in _name_parts(name):
        if part in _NAME_PARTS:
            return _NAME_PARTS[part]
    return None


def named_tool(intent: Intent, tools: Sequence[T]) -> T | None:
    """A tool the prompt names (``Bash``, "the weather tool" for ``get_weather``)."""
    for tool in tools:
        parts = [p for p in _name_parts(tool.name) if len(p) > 3 and p not in _GENERIC]
        if tool.name.lower() in intent.words or (parts and all(p in intent.words for p in parts)):
            return tool
    return None


def tool_for(intent: Intent, tools: Sequence[T]) -> T | None:
    """The offered tool a model would use for the prompt, or None for a text answer."""
    named = named_tool(intent, tools)
    if named is not None or intent.action is None:
        return named
    # The asked-for kind of tool first (a writer for a new file); a shell does everything else.
    asked: _Kind = "create" if intent.create else intent.action
    by_name = {t.name.lower(): t for t in tools}
    for kind in (asked, intent.action, "run"):
        for name in _TOOLS_FOR[kind]:
            if name in by_name:
                return by_name[name]
        for tool in tools:
            if action_of(tool.name) == kind:
                return tool
    return None
