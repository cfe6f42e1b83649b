"""Feature extraction: client detection, hints, sizes, and the agent's stage read from tool calls."""

from __future__ import annotations

import json

import pytest
from test_routing_fixtures import (
    CC_HEADERS,
    CODEX_HEADERS,
    SDK_HEADERS,
    assistant,
    call,
    captured,
    claude_code_76kb,
    request,
    result,
    signed_thinking_history,
    user,
)

from streams.routing.client_detection import detect_client, lower_case_headers
from streams.routing.extractor import FeatureExtractor, bigram_entropy
from streams.translation.canonical import ImagePart, Thinking

fx = FeatureExtractor()


@pytest.mark.parametrize(
    ("name", "client"),
    [
        ("claude_code_turn1_messages.json", "claude_code"),
        ("claude_code_turn2_tool_result_messages.json", "claude_code"),
        ("claude_code_haiku_messages.json", "claude_code"),
        ("codex_turn1_responses.json", "codex"),
        ("codex_turn2_function_call_output_responses.json", "codex"),
        ("openai_sdk_chat_stream_tools.json", "sdk"),
        ("anthropic_sdk_messages_stream_tools.json", "sdk"),
        ("claude_code_head_probe.json", "unknown"),
    ],
)
def test_client_detected_from_captured_headers(name: str, client: str) -> None:
    assert detect_client(lower_case_headers(captured(name)["headers"]))[0] == client


def test_gemini_cli_and_the_genai_sdk_detected() -> None:
    cli = {"user-agent": "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal)",
           "x-goog-api-client": "google-genai-sdk/1.30.0 gl-node/v20.20.2"}  # fmt: skip
    assert detect_client(cli) == ("gemini_cli", "0.61.0")
    assert detect_client({"user-agent": "node", "x-goog-api-client": "google-genai-sdk/1.30.0"})[0] == "sdk"


def test_aider_detected_from_its_system_prompt_despite_sdk_user_agent() -> None:
    cap = captured("aider_chat_completions_stream.json")
    system = cap["body"]["messages"][0]["content"]
    req = request([user("What does hello.py print?")], system=system, with_tools=False, dialect="openai_chat")
    f = fx.extract(req, cap["headers"])
    assert f.client == "aider"
    # The same request from a plain SDK user is an SDK call.
    assert fx.extract(request([user("hi")], with_tools=False), SDK_HEADERS).client == "sdk"


def test_claude_code_version_and_sizes_on_a_76kb_request() -> None:
    f = fx.extract(claude_code_76kb(), CC_HEADERS, requested_model="router/auto")
    assert f.client == "claude_code" and f.client_version == "2.1.197"
    assert 15_000 < f.input_tokens < 25_000  # ~76 KB / 4
    assert f.tools_offered == 24 and f.tools_used == 4
    assert f.thinking_requested and f.effort == "high"
    assert f.conversation_depth == 1
    assert f.n_files >= 3  # the Read calls' file paths plus src/parser.py in the prompt
    json.dumps(f.to_dict())  # flat and JSON-able
    assert "task_text" not in f.to_dict()  # no prompt content in logs
    assert all(isinstance(v, float) for v in f.vector().values())


def test_stage_failing_tests_from_pytest_output() -> None:
    msgs = [
        user("make the tests pass"),
        assistant(call("1", "Bash", {"command": "pytest -q"})),
        user(
            result(
                "1",
                "..F.\n=================== FAILURES ===================\n"
                "E   assert 1 == 2\n=========== 1 failed, 3 passed in 0.12s ===========",
            )
        ),
    ]
    f = fx.extract(request(msgs), CC_HEADERS)
    assert f.stage == "failing_tests"
    assert f.in_tool_loop


def test_stage_failing_tests_in_codex_exec_output() -> None:
    msgs = [
        user("fix the bug"),
        assistant(call("c1", "exec_command", {"cmd": "python -m pytest tests"})),
        user(result("c1", "Process exited with code 1\nOutput:\nFAILED tests/test_a.py::test_x - KeyError")),
    ]
    assert fx.extract(request(msgs), CODEX_HEADERS).stage == "failing_tests"


def test_stage_testing_when_tests_pass_and_editing_after_an_edit() -> None:
    passing = [
        user("run the tests"),
        assistant(call("1", "Bash", {"command": "pytest -q"})),
        user(result("1", "....\n4 passed in 0.10s")),
    ]
    assert fx.extract(request(passing), CC_HEADERS).stage == "testing"
    editing = [
        user("rename foo"),
        assistant(call("1", "Read", {"file_path": "/r/a.py"})),
        user(result("1", "def foo(): pass")),
        assistant(call("2", "Edit", {"file_path": "/r/a.py", "old_string": "foo", "new_string": "bar"})),
        user(result("2", "ok")),
    ]
    assert fx.extract(request(editing), CC_HEADERS).stage == "editing"
    exploring = editing[:3]
    assert fx.extract(request(exploring), CC_HEADERS).stage == "exploring"


def test_loop_detection_same_tool_call_repeated() -> None:
    msgs = [user("find the config")]
    for i in range(3):
        msgs += [assistant(call(f"g{i}", "Grep", {"pattern": "CONFIG_PATH"})), user(result(f"g{i}", "no matches"))]
    f = fx.extract(request(msgs), CC_HEADERS)
    assert f.loop_repeats == 3
    assert f.stage == "stuck"


def test_stage_start_and_chat() -> None:
    assert fx.extract(request([user("add a flag")]), CC_HEADERS).stage == "start"
    assert fx.extract(request([user("hi")], with_tools=False), SDK_HEADERS).stage == "chat"


def test_header_hints() -> None:
    headers = {
        "X-Router-Task": "planning",
        "x-router-tier": "cheap",
        "x-router-max-cost-usd": "0.05",
        "x-router-latency": "batch",
    }
    f = fx.extract(request([user("hello")]), headers)
    assert (f.hint_task, f.hint_tier, f.hint_max_cost_usd, f.hint_latency) == ("planning", "cheap", 0.05, "batch")
    bad = {
        "x-router-task": "dance",
        "x-router-tier": "gold",
        "x-router-max-cost-usd": "lots",
        "x-router-latency": "now",
    }
    f = fx.extract(request([user("hello")]), bad)
    assert (f.hint_task, f.hint_tier, f.hint_max_cost_usd, f.hint_latency) == ("", "", 0.0, "")


def test_claude_code_haiku_background_call_is_a_hint() -> None:
    req = request(
        [user("Generate a title for this conversation")], model="claude-haiku-4-5", with_tools=False, max_tokens=512
    )
    f = fx.extract(req, CC_HEADERS, requested_model="claude-haiku-4-5")
    assert f.background and f.hint_task == "background" and f.hint_tier == "cheap"
    # A normal Claude Code turn is not background.
    f = fx.extract(claude_code_76kb(), CC_HEADERS)
    assert not f.background and f.hint_task == ""


def test_thinking_signed_history_and_images() -> None:
    req = request(signed_thinking_history(), thinking=Thinking(enabled=True, budget_tokens=2048))
    f = fx.extract(req, CC_HEADERS)
    assert f.signed_thinking and f.thinking_requested and f.thinking_budget == 2048
    assert f.conversation_depth == 2
    img = request([user("what is in this screenshot?", ImagePart(url="http://x/y.png"))])
    assert fx.extract(img, CC_HEADERS).has_images


def test_reminders_are_not_the_users_words() -> None:
    msgs = [user("<system-reminder>\nToday's date is 2026-11-22.\n</system-reminder>", "Where is the router config?")]
    f = fx.extract(request(msgs), CC_HEADERS)
    assert f.task_text == "Where is the router config?"


def test_entropy_is_higher_for_varied_text() -> None:
    assert bigram_entropy("aaaaaaaaaaaaaaaa") == 0.0
    assert bigram_entropy("def parse(x): return json.loads(x)") > 4.0


PARSER = pytest.importorskip("streams.translation.anthropic_messages", reason="parser not built yet")


@pytest.mark.parametrize(
    ("name", "stage"),
    [
        ("claude_code_turn1_messages.json", "start"),
        ("claude_code_turn2_tool_result_messages.json", "exploring"),
        ("claude_code_haiku_messages.json", "start"),
    ],
)
def test_features_on_captured_claude_code_bodies(name: str, stage: str) -> None:
    cap = captured(name)
    body = dict(cap["body"])
    body["tools"] = [t for t in body["tools"] if isinstance(t, dict)]  # the capture trimmed the tail
    req = PARSER.parse_request(body)
    f = fx.extract(req, cap["headers"], requested_model=body["model"])
    assert f.client == "claude_code"
    assert f.stage == stage
    assert f.task_text == ("hi" if "haiku" in name else "What does hello.py print?")
    assert f.tools_offered == len(body["tools"])


@pytest.mark.parametrize(
    ("name", "stage", "in_loop"),
    [
        ("codex_turn1_responses.json", "start", False),
        ("codex_turn2_function_call_output_responses.json", "exploring", True),
    ],
)
def test_features_on_captured_codex_bodies(name: str, stage: str, in_loop: bool) -> None:
    responses = pytest.importorskip("streams.translation.openai_responses", reason="parser not built yet")
    cap = captured(name)
    body = dict(cap["body"])
    body["tools"] = [t for t in body["tools"] if isinstance(t, dict)]
    body["input"] = [t for t in body["input"] if isinstance(t, dict)]
    f = fx.extract(responses.parse_request(body), cap["headers"], requested_model=body["model"])
    assert (f.client, f.stage, f.in_tool_loop) == ("codex", stage, in_loop)
    assert f.task_text == "What does hello.py print?"


def test_features_on_captured_aider_body() -> None:
    chat = pytest.importorskip("streams.translation.openai_chat", reason="parser not built yet")
    cap = captured("aider_chat_completions_stream.json")
    f = fx.extract(chat.parse_request(cap["body"]), cap["headers"], requested_model="router-auto")
    assert (f.client, f.stage, f.tools_offered) == ("aider", "chat", 0)
    assert f.n_code_blocks >= 1 and f.conversation_depth == 4


def test_headers_are_lower_cased_once_per_request() -> None:
    already = {"user-agent": "claude-cli/2.1", "x-session-id": "s"}
    assert lower_case_headers(already) is already  # the ingress's own map: no second copy
    mixed = {"User-Agent": "claude-cli/2.1"}
    assert lower_case_headers(mixed) == {"user-agent": "claude-cli/2.1"} and "User-Agent" in mixed
