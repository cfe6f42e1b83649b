"""The agent's stage (exploring, editing, testing, failing tests, stuck), from its recent tool calls.

Tool calls are classified by name and, for shells, by command (read, edit, test, run); test-run
results are scanned (a bounded tail) for the failures and passes test runners print.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from streams.translation.canonical import Message, TextPart, ToolCallPart, ToolResultPart

if TYPE_CHECKING:
    from streams.routing.features import Features

RECENT_MESSAGES = 12  # how far back stage detection looks
RESULT_SCAN = 4096  # chars of the tail of a tool result scanned for test failures
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
_FILE_ARG_RE = re.compile(r'"(?:file_path|path|filename|notebook_path)"\s*:\s*"([^"]+)"')


def read_stage(f: Features, messages: list[Message], files: set[str]) -> None:
    """Set ``f``'s stage, last tool, loop repeats and in-tool-loop flag from the tool calls and results of
    the recent messages; the files named in tool-call arguments are added to ``files``."""
    recent = messages[-RECENT_MESSAGES:]
    actions: list[str] = []
    call_keys: dict[tuple[str, str], int] = {}
    call_kind: dict[str, str] = {}
    last_test_result_fail: bool | None = None
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
                for path in _FILE_ARG_RE.findall(p.arguments[:1000]):
                    files.add(path)
            elif isinstance(p, ToolResultPart):
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
