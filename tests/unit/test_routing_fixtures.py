"""A tiny builder of CanonicalRequests for the routing tests and bench (no parser needed).

Imported by the other test_routing_* files and by bench/bench_decision.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.config import Settings, load_settings
from streams.translation.canonical import (
    CanonicalRequest,
    Message,
    Part,
    TextPart,
    Thinking,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

CAPTURED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "captured_requests"
if not CAPTURED.is_dir():
    CAPTURED = Path("/work/shared/reference/captured_requests")

CC_HEADERS = {
    "User-Agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "X-Claude-Code-Session-Id": "cc-session-1",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-app": "cli",
}
CODEX_HEADERS = {
    "User-Agent": "codex_exec/0.169.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.169.0)",
    "originator": "codex_exec",
    "session-id": "codex-session-1",
}
SDK_HEADERS = {"User-Agent": "OpenAI/Python 3.54.0", "x-stainless-lang": "python"}

CC_TOOLS = [
    "Agent",
    "Bash",
    "Glob",
    "Grep",
    "Read",
    "Edit",
    "Write",
    "MultiEdit",
    "NotebookEdit",
    "WebFetch",
    "WebSearch",
    "TodoWrite",
    "ExitPlanMode",
    "BashOutput",
    "KillShell",
    "Skill",
    "SlashCommand",
    "ListMcpResources",
    "ReadMcpResource",
    "AskUserQuestion",
    "ScheduleWakeup",
    "EnterPlanMode",
    "TaskOutput",
    "LSP",
]


def text(s: str) -> TextPart:
    return TextPart(s)


def call(cid: str, name: str, args: dict[str, Any]) -> ToolCallPart:
    return ToolCallPart(cid, name, json.dumps(args))


def result(cid: str, out: str, is_error: bool = False) -> ToolResultPart:
    return ToolResultPart(cid, [TextPart(out)], is_error=is_error)


def user(*parts: Part | str) -> Message:
    return Message("user", [text(p) if isinstance(p, str) else p for p in parts])


def assistant(*parts: Part | str) -> Message:
    return Message("assistant", [text(p) if isinstance(p, str) else p for p in parts])


def tools(names: list[str] = CC_TOOLS, desc_chars: int = 1200) -> list[Tool]:
    schema = {
        "type": "object",
        "properties": {
            "file_path": {"type": "string", "description": "absolute path"},
            "command": {"type": "string", "description": "shell command"},
        },
        "required": ["file_path"],
        "additionalProperties": False,
    }
    return [
        Tool(n, (f"The {n} tool. " + "Use it carefully and follow the instructions. " * 40)[:desc_chars], schema)
        for n in names
    ]


def request(
    messages: list[Message],
    *,
    model: str = "router/auto",
    with_tools: bool = True,
    system: str = "You are a coding agent.",
    **kw: Any,
) -> CanonicalRequest:
    return CanonicalRequest(
        model=model,
        messages=messages,
        system=[TextPart(system)],
        tools=tools() if with_tools else [],
        dialect=kw.pop("dialect", "anthropic_messages"),
        **kw,
    )


def claude_code_76kb(extra_turns: int = 3) -> CanonicalRequest:
    """A Claude Code-shaped request of ~76 KB: 24 tools, a 27 KB system prompt, reminders, a tool loop."""
    system = "You are an interactive agent that helps users with software engineering tasks.\n" + (
        "IMPORTANT: follow the instructions, keep answers short, use the tools. " * 380
    )
    msgs = [
        user(
            "<system-reminder>\nToday's date is 2026-11-22.\n" + "context " * 300 + "</system-reminder>",
            "The parser test fails on empty input; please fix src/parser.py and make tests pass.",
        ),
        Message("system", [text("Available agent types for the Agent tool:\n" + "- agent: does things\n" * 150)]),
    ]
    for i in range(extra_turns):
        msgs.append(assistant(f"Reading file {i}.", call(f"t{i}", "Read", {"file_path": f"/repo/src/mod{i}.py"})))
        msgs.append(user(result(f"t{i}", "\n".join(f"{n}\tline of code number {n}" for n in range(60)))))
    msgs.append(assistant(call("tp", "Bash", {"command": "python -m pytest -q tests/test_parser.py"})))
    msgs.append(
        user(
            result(
                "tp", "....F\n=== FAILURES ===\nAssertionError: expected []\n1 failed, 4 passed in 0.1s", is_error=True
            )
        )
    )
    return CanonicalRequest(
        model="claude-opus-4-8",
        messages=msgs,
        system=[TextPart(system)],
        tools=tools(),
        max_tokens=64000,
        stream=True,
        thinking=Thinking(enabled=True, effort="high"),
        dialect="anthropic_messages",
    )


def signed_thinking_history() -> list[Message]:
    return [
        user("Refactor the config loader"),
        assistant(ThinkingPart("let me think", signature="sig=="), "Done, I refactored it."),
        user("Now add a --verbose flag"),
    ]


def default_settings(**routing: Any) -> Settings:
    s = load_settings(env={})
    if routing:
        data = s.model_dump()
        data["routing"].update(routing)
        s = Settings.model_validate(data)
    return s


def captured(name: str) -> dict[str, Any]:
    return json.loads((CAPTURED / name).read_text())


def test_claude_code_fixture_is_76kb() -> None:
    # The bench's request must stay representative of a real Claude Code turn (~76 KB on the wire).
    req = claude_code_76kb()
    size = sum(len(p.text) for p in req.system) + sum(len(t.description) + 200 for t in req.tools)
    size += sum(len(getattr(p, "text", "") or getattr(p, "arguments", "")) for m in req.messages for p in m.parts)
    size += sum(len(c.text) for m in req.messages for p in m.parts if isinstance(p, ToolResultPart) for c in p.content)
    assert 65_000 < size < 90_000
