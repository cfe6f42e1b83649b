"""A file edit the simulated model makes, rendered for whichever edit tool the agent offers.

An edit comes from a script (``{"edit": {"path": "hello.py", "old": "hi", "new": "bye"}}``, or without
``old`` to create the file) or from a prompt that asks to edit or create a file. Codex's ``apply_patch``
gets a patch in its own envelope (``*** Begin Patch`` / ``*** Add File:`` / ``*** Update File:`` …
``*** End Patch``); a shell tool gets a command that makes the same change; schema tools (Claude Code's
``Edit``/``Write``, gemini-cli's ``replace``/``write_file``) get the path and strings as arguments.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Edit:
    path: str
    new: str
    old: str | None = None  # None: create the file with ``new``; "": append ``new``; else replace it

    @classmethod
    def from_script(cls, value: Any) -> Edit:
        if not isinstance(value, dict) or not isinstance(value.get("path"), str) or not value["path"]:
            raise ValueError("x-sim-script: 'edit' must be an object with a 'path'")
        new = value.get("new", value.get("content", ""))
        old = value.get("old")
        if not isinstance(new, str) or not (old is None or isinstance(old, str)):
            raise ValueError("x-sim-script: 'edit.old' and 'edit.new' must be strings")
        return cls(value["path"], new, old)


def _lines(prefix: str, text: str) -> str:
    return "".join(prefix + line + "\n" for line in text.splitlines() or [""])


def patch(edit: Edit) -> str:
    """The edit in Codex's apply_patch format."""
    if edit.old is None:
        body = f"*** Add File: {edit.path}\n" + _lines("+", edit.new)
    else:
        # A hunk without context lines appends; with "-" lines it replaces them where they are.
        body = (
            f"*** Update File: {edit.path}\n@@\n" + (_lines("-", edit.old) if edit.old else "") + _lines("+", edit.new)
        )
    return "*** Begin Patch\n" + body + "*** End Patch\n"


def shell_command(edit: Edit) -> str:
    path = shlex.quote(edit.path)
    if edit.old is None:
        return f"printf '%s\\n' {shlex.quote(edit.new)} > {path}"
    if not edit.old:
        return f"printf '%s\\n' {shlex.quote(edit.new)} >> {path}"
    script = "import pathlib,sys; p=pathlib.Path(sys.argv[1]); p.write_text(p.read_text().replace(sys.argv[2], sys.argv[3], 1))"
    return f"python3 -c {shlex.quote(script)} {path} {shlex.quote(edit.old)} {shlex.quote(edit.new)}"


def argument_hints(edit: Edit) -> dict[str, str]:
    """Values for the usual argument names of schema edit tools."""
    hints = {"path": edit.path, "content": edit.new, "new_string": edit.new, "new_str": edit.new}
    hints["file_text"] = edit.new
    hints["newstring"] = edit.new  # opencode's edit tool: ``oldString``/``newString`` (names are lowercased)
    if edit.old:
        hints["old_string"] = hints["old_str"] = hints["oldstring"] = edit.old
    return hints
