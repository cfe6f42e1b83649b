"""The simulated model's decisions: determinism, skill, tool calls from schemas, scripts, faults, caching."""

from __future__ import annotations

import json

import pytest

from streams.providers.sim.behaviour import (
    FAIL_MARKER,
    PASS_MARKER,
    Behaviour,
    SimRequest,
    ToolSpec,
    _split_text,
    solves,
)
from streams.providers.sim.config import SimConfig
from streams.providers.sim.faults import FaultBook, FaultError, FaultSpec, parse_fault_header
from streams.providers.sim.usage import PromptCache

BASH = ToolSpec("Bash", {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]})
EDIT = ToolSpec(
    "Edit",
    {
        "type": "object",
        "properties": {
            "file_path": {"type": "string"},
            "replace_all": {"type": "boolean"},
            "count": {"type": "integer", "minimum": 3, "maximum": 5},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opts": {"type": "object", "properties": {"depth": {"type": "number"}}, "required": ["depth"]},
            "optional": {"type": "string"},
        },
        "required": ["file_path", "replace_all", "count", "mode", "tags", "opts"],
    },
)


def _req(text: str = "fix the failing test", **kw: object) -> SimRequest:
    return SimRequest(dialect="openai_chat", model=str(kw.pop("model", "m1")), last_user_text=text, **kw)  # type: ignore[arg-type]


def test_solves_is_stable_and_matches_skill_rate() -> None:
    tasks = [f"task-{i}" for i in range(4000)]
    first = [solves("model-a", t, 0.3) for t in tasks]
    assert first == [solves("model-a", t, 0.3) for t in tasks]
    rate = sum(first) / len(tasks)
    assert 0.27 < rate < 0.33
    assert not any(solves("model-a", t, 0.0) for t in tasks[:200])
    assert all(solves("model-a", t, 1.0) for t in tasks[:200])


def test_raising_skill_only_turns_failures_into_successes() -> None:
    tasks = [f"t{i}" for i in range(500)]
    low = {t for t in tasks if solves("m", t, 0.4)}
    high = {t for t in tasks if solves("m", t, 0.7)}
    assert low < high


def test_models_share_task_difficulty() -> None:
    # Hard tasks are hard for everyone: two models of equal skill agree more often than chance (0.5).
    tasks = [f"t{i}" for i in range(2000)]
    agree = sum(solves("a", t, 0.5) == solves("b", t, 0.5) for t in tasks) / len(tasks)
    assert agree > 0.6


def test_reply_is_deterministic_per_model_and_input() -> None:
    b = Behaviour(SimConfig(reply_tokens=30))
    p1, p2 = b.plan(_req()), Behaviour(SimConfig(reply_tokens=30)).plan(_req())
    assert p1.text_str == p2.text_str and p1.stop == "end" and not p1.tool_calls
    assert b.plan(_req(model="m2")).text_str != p1.text_str
    assert b.plan(_req("another question")).text_str != p1.text_str
    assert 0.7 * 30 <= p1.output_tokens <= 1.3 * 30
    assert p1.output_tokens == len(p1.text)


def test_task_marker_follows_solves() -> None:
    b = Behaviour(SimConfig(models={"strong": 1.0, "weak": 0.0}))
    assert b.plan(_req(model="strong"), task="T-1").text_str.startswith(PASS_MARKER)
    assert b.plan(_req(model="weak"), task="T-1").text_str.startswith(FAIL_MARKER)
    b.set_skill("weak", 1.0)  # drift
    assert b.plan(_req(model="weak"), task="T-1").text_str.startswith(PASS_MARKER)
    with pytest.raises(ValueError):
        b.set_skill("weak", 1.5)


def test_max_tokens_truncates_with_marker_kept() -> None:
    b = Behaviour(SimConfig(reply_tokens=50, models={"s": 1.0}))
    plan = b.plan(_req(model="s", max_tokens=5), task="t")
    assert plan.stop == "max_tokens" and plan.output_tokens == 5
    assert plan.text_str.startswith(PASS_MARKER)


def test_a_run_request_calls_the_shell_tool_with_the_command() -> None:
    b = Behaviour(SimConfig())
    plan = b.plan(_req("run the failing test", tools=[EDIT, BASH]))
    assert plan.stop == "tool_use" and [c.name for c in plan.tool_calls] == ["Bash"]
    assert json.loads(plan.tool_calls[0].arguments) == {"command": "pytest -q"}
    assert plan.text_str.startswith("I'll use Bash")


def test_required_tool_choice_without_a_request_uses_a_preferred_tool() -> None:
    plan = Behaviour(SimConfig()).plan(_req("say hello", tools=[EDIT, BASH], tool_choice="required"))
    assert [c.name for c in plan.tool_calls] == ["Bash"]
    assert not Behaviour(SimConfig()).plan(_req("say hello", tools=[EDIT, BASH])).tool_calls


def test_tool_arguments_follow_schema() -> None:
    b = Behaviour(SimConfig(preferred_tools=[]))
    args = json.loads(b.plan(_req(tools=[EDIT])).tool_calls[0].arguments)
    assert set(args) == {"file_path", "replace_all", "count", "mode", "tags", "opts"}
    assert isinstance(args["file_path"], str) and args["replace_all"] is False
    assert 3 <= args["count"] <= 5 and args["mode"] == "fast"
    assert isinstance(args["tags"], list) and isinstance(args["opts"]["depth"], float)


def test_after_tool_result_answers_with_text() -> None:
    b = Behaviour(SimConfig())
    plan = b.plan(_req(tools=[BASH], after_tool_result=True, tool_result_text="ok"))
    assert plan.stop == "end" and not plan.tool_calls and plan.text


def test_tool_choice_none_and_named() -> None:
    b = Behaviour(SimConfig())
    assert not b.plan(_req(tools=[BASH, EDIT], tool_choice="none")).tool_calls
    assert b.plan(_req(tools=[BASH, EDIT], tool_choice="tool:Edit")).tool_calls[0].name == "Edit"


def test_script_tool_calls_parallel_and_text() -> None:
    b = Behaviour(SimConfig())
    script = {"tool_calls": [{"name": "Bash", "arguments": {"command": "pytest"}}], "parallel": True, "text": "Go."}
    plan = b.plan(_req(tools=[BASH, EDIT]), script)
    assert plan.text_str == "Go."
    assert [c.name for c in plan.tool_calls] == ["Bash", "Edit"]
    assert json.loads(plan.tool_calls[0].arguments) == {"command": "pytest"}
    assert len({c.id for c in plan.tool_calls}) == 2
    # Parallel calls are off when the request disables them.
    assert len(b.plan(_req(tools=[BASH, EDIT], parallel_allowed=False), script).tool_calls) == 1
    # An empty tool_calls list means: answer with text.
    assert not b.plan(_req(tools=[BASH]), {"tool_calls": [], "text": "hi"}).tool_calls


def test_config_script_and_parallel_rate() -> None:
    b = Behaviour(SimConfig(parallel_rate=1.0, tool_preamble=False))
    plan = b.plan(_req(tools=[BASH, EDIT]))
    assert len(plan.tool_calls) == 2 and not plan.text
    scripted = Behaviour(SimConfig(script={"text": "Fixed."})).plan(_req())
    assert scripted.text_str == "Fixed."


def test_thinking_block_when_enabled() -> None:
    b = Behaviour(SimConfig())
    plan = b.plan(_req(thinking=True))
    assert plan.thinking_str and plan.output_tokens == len(plan.thinking) + len(plan.text)


def test_split_text_round_trips() -> None:
    for s in ["", "a", "hello  world.", " lead", "x y z"]:
        assert "".join(_split_text(s)) == s


def test_fault_header_forms() -> None:
    assert parse_fault_header("503").status == 503
    rl = parse_fault_header("429:2.5")
    assert rl.kind == "rate_limit" and rl.retry_after == 2.5
    assert parse_fault_header("timeout:3").seconds == 3
    assert parse_fault_header("disconnect:4").after_chunks == 4
    assert parse_fault_header("slow:10").tokens_per_s == 10
    assert parse_fault_header('{"kind": "malformed", "after_chunks": 1}').kind == "malformed"
    for bad in ["explode", "timeout:soon", "{bad json", '{"kind": "error", "status": 200}']:
        with pytest.raises(FaultError):
            parse_fault_header(bad)
    with pytest.raises(FaultError):
        FaultSpec.from_dict({"kind": "error", "colour": "red"})


def test_fault_book_count_probability_and_filters() -> None:
    book = FaultBook([FaultSpec("error", count=2, model="m1")], seed=1)
    assert book.pick("m2", "openai_chat") is None
    assert book.pick("m1", "openai_chat") is not None
    assert book.pick("m1", "openai_chat") is not None
    assert book.pick("m1", "openai_chat") is None  # used up
    book.add(FaultSpec("rate_limit", probability=0.5))
    hits = sum(book.pick("m", "anthropic_messages") is not None for _ in range(1000))
    assert 400 < hits < 600
    book.clear()
    assert book.pick("m", "x") is None


def test_anthropic_prompt_cache_write_then_read() -> None:
    cache = PromptCache()
    system = [{"type": "text", "text": "You are helpful. " * 200, "cache_control": {"type": "ephemeral"}}]
    turn1 = {"system": system, "messages": [{"role": "user", "content": "q1"}]}
    read, write = cache.anthropic("m", turn1, 10_000)
    assert read == 0 and write > 500
    turn2 = {"system": system, "messages": [{"role": "user", "content": "q2"}]}
    read2, write2 = cache.anthropic("m", turn2, 10_000)
    assert read2 == write and write2 == 0
    # Another model has its own cache.
    assert cache.anthropic("other", turn2, 10_000)[0] == 0


def test_openai_prompt_cache_key_repeated() -> None:
    cache = PromptCache()
    assert cache.openai("m", "sess-1", 3000) == 0
    assert cache.openai("m", "sess-1", 3500) == 2944  # the previous prompt, in 128-token blocks
    assert cache.openai("m", None, 3500) == 0


def test_openai_caches_long_prompts_without_being_asked() -> None:
    """As the API does: a prompt of 1,024+ tokens whose start was seen before reads the cache, keyless."""
    cache = PromptCache()
    system = b'{"model":"m","messages":[{"role":"system","content":"' + b"conventions " * 600
    first, second = system + b'turn one"}]}', system + b'turn one"},{"role":"user","content":"two"}]}'
    assert cache.openai("m", None, 2000, first) == 0
    assert cache.openai("m", None, 2100, second) == 1920
    assert cache.openai("other", None, 2100, second) == 0  # each model its own cache
    short = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    assert cache.openai("m", None, 20, short) == 0
    assert cache.openai("m", None, 20, short) == 0  # below the minimum nothing is cached
