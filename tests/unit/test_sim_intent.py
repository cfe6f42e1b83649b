"""The simulated model calls tools only when asked, picks the tool a model would, and edits files with
whichever edit tool the agent offers (Codex's apply_patch gets a patch in Codex's format)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from streams.providers.sim.behaviour import Behaviour, SimRequest, ToolSpec
from streams.providers.sim.config import SimConfig
from streams.providers.sim.edits import Edit, patch, shell_command
from streams.providers.sim.intent import read_intent, user_words

SHELL = ToolSpec("exec_command", {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]})
APPLY_PATCH = ToolSpec("apply_patch", {}, custom=True)
EDIT = ToolSpec(
    "Edit",
    {
        "type": "object",
        "properties": {
            "file_path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
        },
        "required": ["file_path", "old_string", "new_string"],
    },
)
READ = ToolSpec("Read", {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]})
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def _plan(text: str, tools: list[ToolSpec], script: dict | None = None, **kw: object):  # type: ignore[no-untyped-def]
    req = SimRequest(dialect="openai_responses", model="m", last_user_text=text, tools=tools, **kw)  # type: ignore[arg-type]
    return Behaviour(SimConfig()).plan(req, script)


@pytest.mark.parametrize("text", ["say hello", "what is 2+2", "hi", "Write a haiku about autumn", "thanks!"])
def test_plain_questions_are_answered_in_text(text: str) -> None:
    plan = _plan(text, [SHELL, APPLY_PATCH, EDIT, READ])
    assert plan.stop == "end" and not plan.tool_calls and plan.text


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        ("Run the tests", "exec_command", {"cmd": "pytest -q"}),
        ("What does hello.py print?", "Read", {"file_path": "hello.py"}),
        ("Read src/app/main.rs", "Read", {"file_path": "src/app/main.rs"}),
        ("What is the weather in Paris?", "get_weather", {"city": "Paris"}),
    ],
)
def test_requests_for_an_action_call_the_matching_tool(text: str, tool: str, arguments: dict) -> None:
    plan = _plan(text, [WEATHER, SHELL, EDIT, READ])
    assert plan.stop == "tool_use" and [c.name for c in plan.tool_calls] == [tool]
    assert json.loads(plan.tool_calls[0].arguments) == arguments


def test_without_a_read_tool_the_shell_reads_the_file() -> None:
    plan = _plan("What does hello.py print?", [SHELL])
    assert json.loads(plan.tool_calls[0].arguments) == {"cmd": "cat hello.py"}


def test_agent_context_is_not_the_request() -> None:
    text = "<system-reminder>Read the files and edit them; run the tests.</system-reminder>\nhi"
    assert user_words(text) == "hi" and read_intent(text).action is None
    assert not _plan(text, [SHELL, EDIT]).tool_calls


def test_after_a_tool_result_the_answer_is_text() -> None:
    plan = _plan("Run the tests", [SHELL], after_tool_result=True, tool_result_text="3 passed")
    assert plan.stop == "end" and not plan.tool_calls


def _apply(patch_text: str, root: Path) -> None:
    """Codex's format, applied by a small reference reader of its grammar (add file / append / replace)."""
    lines = patch_text.splitlines()
    assert lines[0] == "*** Begin Patch" and lines[-1] == "*** End Patch", patch_text
    op, path = lines[1].split(": ", 1)
    body = lines[2:-1]
    target = root / path
    if op == "*** Add File":
        assert all(line.startswith("+") for line in body)
        target.write_text("".join(line[1:] + "\n" for line in body))
        return
    assert op == "*** Update File" and body[0] == "@@"
    old = "".join(line[1:] + "\n" for line in body[1:] if line.startswith("-"))
    new = "".join(line[1:] + "\n" for line in body[1:] if line.startswith("+"))
    text = target.read_text()
    target.write_text(text.replace(old, new, 1) if old else text + new)


def test_prompted_edits_become_apply_patch_calls(tmp_path: Path) -> None:
    created = _plan("Create a new file notes.txt with a greeting", [SHELL, APPLY_PATCH]).tool_calls
    assert [(c.name, c.custom) for c in created] == [("apply_patch", True)]
    assert created[0].arguments.startswith("*** Begin Patch\n*** Add File: notes.txt\n+")
    _apply(created[0].arguments, tmp_path)
    assert (tmp_path / "notes.txt").read_text().strip()
    (tmp_path / "hello.py").write_text("print('hello')\n")
    edited = _plan("Edit hello.py so that it also logs", [SHELL, APPLY_PATCH]).tool_calls
    assert edited[0].arguments.startswith("*** Begin Patch\n*** Update File: hello.py\n@@\n+")
    _apply(edited[0].arguments, tmp_path)
    lines = (tmp_path / "hello.py").read_text().splitlines()
    assert lines[0] == "print('hello')" and len(lines) == 2


def test_scripted_edit_for_each_kind_of_edit_tool(tmp_path: Path) -> None:
    script = {"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}}
    (tmp_path / "hello.py").write_text("print('hello')\n")
    call = _plan("hi", [SHELL, APPLY_PATCH], script).tool_calls[0]
    assert (
        call.arguments
        == "*** Begin Patch\n*** Update File: hello.py\n@@\n-print('hello')\n+print('bye')\n*** End Patch\n"
    )
    _apply(call.arguments, tmp_path)
    assert (tmp_path / "hello.py").read_text() == "print('bye')\n"
    claude = _plan("hi", [READ, EDIT], script).tool_calls[0]
    assert (claude.name, json.loads(claude.arguments)) == (
        "Edit", {"file_path": "hello.py", "old_string": "print('hello')", "new_string": "print('bye')"}
    )  # fmt: skip
    shell = _plan("hi", [SHELL], script).tool_calls[0]
    subprocess.run(shlex.split(json.loads(shell.arguments)["cmd"]), cwd=tmp_path, check=True)
    assert (tmp_path / "hello.py").read_text() == "print('bye')\n"
    names = ("filePath", "oldString", "newString")  # opencode's edit tool
    camel = ToolSpec("edit", {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)})
    opencode = _plan("hi", [camel], script).tool_calls[0]
    assert json.loads(opencode.arguments) == {"filePath": "hello.py", "oldString": "print('hello')", "newString": "print('bye')"}


def test_shell_commands_create_and_append(tmp_path: Path) -> None:
    subprocess.run(shell_command(Edit("a.txt", "it's new")), shell=True, cwd=tmp_path, check=True)
    subprocess.run(shell_command(Edit("a.txt", "more", "")), shell=True, cwd=tmp_path, check=True)
    assert (tmp_path / "a.txt").read_text() == "it's new\nmore\n"
    assert patch(Edit("d/x.md", "a\nb")) == "*** Begin Patch\n*** Add File: d/x.md\n+a\n+b\n*** End Patch\n"


def test_bad_edit_script_is_refused() -> None:
    with pytest.raises(ValueError, match="edit"):
        _plan("hi", [SHELL], {"edit": {"old": "x"}})


def test_a_new_file_goes_to_the_writer_tool() -> None:
    write = ToolSpec(
        "write_file",
        {"type": "object", "properties": {"file_path": {}, "content": {}}, "required": ["file_path", "content"]},
    )
    replace = ToolSpec("replace", {"type": "object", "properties": {"file_path": {}}, "required": ["file_path"]})
    text = "<session_context>\nfolder: err.txt README.md\n</session_context>\nCreate a file named notes.txt with a greeting"
    call = _plan(text, [replace, write, SHELL]).tool_calls[0]
    args = json.loads(call.arguments)
    assert call.name == "write_file" and args["file_path"] == "notes.txt" and args["content"].strip()
