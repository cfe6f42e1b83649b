"""The simulated provider driven by the official openai and anthropic SDKs over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from streams.providers.sim import PASS_MARKER, SimConfig, running_sim, running_sim_thread
from streams.providers.sim.behaviour import FAIL_MARKER
from tests._support import missing

CAPTURED = Path("/work/shared/reference/captured_requests")
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
BASH = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "Bash", "description": "run", "parameters": BASH}},
]
RESP_TOOLS = [{"type": "function", "name": "get_weather", "description": "w", "parameters": WEATHER}]
ANTH_TOOLS = [{"name": "get_weather", "description": "w", "input_schema": WEATHER}]
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def _transport_errors() -> tuple[type[BaseException], ...]:
    # Newer SDKs read streams through their own httpx fork ("httpx2"), whose errors are not httpx's.
    errors: list[type[BaseException]] = [anthropic.APIConnectionError, openai.APIConnectionError, httpx.TransportError]
    try:
        import httpx2  # type: ignore[import-not-found]

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    config = SimConfig(ttft_ms=0, tokens_per_s=0, reply_tokens=20, models={"strong": 1.0, "weak": 0.0, "mid": 0.5})
    async with running_sim(config) as url:
        yield url


def oai(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-test", max_retries=0, timeout=5)


def ant(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="sk-test", max_retries=0, timeout=5)


# -- OpenAI Chat Completions ---------------------------------------------------------------------------------
async def test_chat_non_streaming_text_and_usage(sim_url: str) -> None:
    r = await oai(sim_url).chat.completions.create(model="strong", messages=USER)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content
    assert r.usage and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    again = await oai(sim_url).chat.completions.create(model="strong", messages=USER)
    assert again.choices[0].message.content == r.choices[0].message.content


async def test_chat_streaming_matches_non_streaming(sim_url: str) -> None:
    client = oai(sim_url)
    full = await client.chat.completions.create(model="m", messages=USER)
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]


async def test_chat_stream_without_include_usage_has_no_usage_chunk(sim_url: str) -> None:
    stream = await oai(sim_url).chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


async def test_chat_tool_call_stream_helper(sim_url: str) -> None:
    ask = [{"role": "user", "content": "Run the test suite"}]
    async with oai(sim_url).chat.completions.stream(model="m", messages=ask, tools=CHAT_TOOLS) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["Bash"]  # the shell runs things
    assert json.loads(calls[0].function.arguments) == {"command": "pytest -q"}


@pytest.mark.parametrize("ask", ["say hello", "What is 2+2?"])
async def test_plain_questions_get_text_although_tools_are_offered(sim_url: str, ask: str) -> None:
    user = [{"role": "user", "content": ask}]
    chat = await oai(sim_url).chat.completions.create(model="m", messages=user, tools=CHAT_TOOLS)  # type: ignore[arg-type]
    assert chat.choices[0].finish_reason == "stop" and chat.choices[0].message.content
    assert not chat.choices[0].message.tool_calls
    resp = await oai(sim_url).responses.create(model="m", input=ask, tools=RESP_TOOLS)  # type: ignore[arg-type]
    assert [o.type for o in resp.output] == ["message"]
    msg = await ant(sim_url).messages.create(model="m", max_tokens=200, messages=user, tools=ANTH_TOOLS)  # type: ignore[arg-type]
    assert msg.stop_reason == "end_turn" and [b.type for b in msg.content] == ["text"]


async def test_chat_parallel_tool_calls_from_script_header(sim_url: str) -> None:
    script = {
        "tool_calls": [
            {"name": "Bash", "arguments": {"command": "pytest"}},
            {"name": "get_weather", "arguments": {"city": "Oslo"}},
        ]
    }
    client = oai(sim_url)
    headers = {"x-sim-script": json.dumps(script)}
    r = await client.chat.completions.create(model="m", messages=USER, tools=CHAT_TOOLS, extra_headers=headers)
    calls = r.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [{"command": "pytest"}, {"city": "Oslo"}]
    stream = await client.chat.completions.create(
        model="m", messages=USER, tools=CHAT_TOOLS, stream=True, extra_headers=headers
    )
    args: dict[int, str] = {}
    async for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")  # type: ignore[union-attr]
    assert [json.loads(a) for a in args.values()] == [{"command": "pytest"}, {"city": "Oslo"}]


async def test_chat_after_tool_result_answers_and_stops(sim_url: str) -> None:
    first = await oai(sim_url).chat.completions.create(model="m", messages=USER, tools=CHAT_TOOLS)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = await oai(sim_url).chat.completions.create(model="m", messages=messages, tools=CHAT_TOOLS)  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


async def test_chat_max_tokens_reports_length(sim_url: str) -> None:
    r = await oai(sim_url).chat.completions.create(model="m", messages=USER, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3  # type: ignore[union-attr]


# -- OpenAI Responses -----------------------------------------------------------------------------------------
async def test_responses_non_streaming_and_stream_helper_agree(sim_url: str) -> None:
    client = oai(sim_url)
    full = await client.responses.create(model="m", input="hello there")
    assert full.status == "completed" and full.output_text and full.usage and full.usage.output_tokens > 0
    async with client.responses.stream(model="m", input=[{"role": "user", "content": "hello there"}]) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == full.output_text
    assert final.usage and final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens


async def test_responses_stream_sequence_numbers_and_function_call(sim_url: str) -> None:
    stream = await oai(sim_url).responses.create(model="m", input="weather?", tools=RESP_TOOLS, stream=True)  # type: ignore[arg-type]
    events = [e async for e in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types
    final = events[-1].response  # type: ignore[union-attr]
    call = next(o for o in final.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]


async def test_responses_stream_helper_with_tool_then_tool_output(sim_url: str) -> None:
    client = oai(sim_url)
    async with client.responses.stream(model="m", input="weather?", tools=RESP_TOOLS) as stream:  # type: ignore[arg-type]
        final = await stream.get_final_response()
    call = next(o for o in final.output if o.type == "function_call")
    follow = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    second = await client.responses.create(model="m", input=follow, tools=RESP_TOOLS)  # type: ignore[arg-type]
    assert [o.type for o in second.output] == ["message"] and second.output_text


APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
}
EXEC = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}


async def test_responses_custom_tool_call_streams_its_input_and_takes_its_output(sim_url: str) -> None:
    client = oai(sim_url)
    ask = "Create a new file hello.txt that greets the reader"
    stream = await client.responses.create(model="m", input=ask, tools=[EXEC, APPLY_PATCH], stream=True)  # type: ignore[list-item]
    events = [e async for e in stream]
    types = [e.type for e in events]
    assert "response.custom_tool_call_input.delta" in types and "response.function_call_arguments.delta" not in types
    deltas = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")  # type: ignore[union-attr]
    done = next(e for e in events if e.type == "response.custom_tool_call_input.done")
    final = events[-1].response  # type: ignore[union-attr]
    call = next(o for o in final.output if o.type == "custom_tool_call")
    assert call.name == "apply_patch" and call.input == deltas == done.input  # type: ignore[union-attr]
    assert call.input.startswith("*** Begin Patch\n*** Add File: hello.txt\n+") and call.input.endswith(
        "*** End Patch\n"
    )
    follow = [
        {"role": "user", "content": ask},
        {"type": "custom_tool_call", "call_id": call.call_id, "name": call.name, "input": call.input},
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Success. Updated: A hello.txt"},
    ]
    second = await client.responses.create(model="m", input=follow, tools=[EXEC, APPLY_PATCH])  # type: ignore[arg-type, list-item]
    assert [o.type for o in second.output] == ["message"]
    assert second.output_text.startswith("Done: checked the tool output.")


async def test_responses_prompt_cache_key_reports_cached_tokens(sim_url: str) -> None:
    client = oai(sim_url)
    long_input = "context line about the repository layout\n" * 400
    first = await client.responses.create(model="m", input=long_input, prompt_cache_key="sess-9")
    second = await client.responses.create(model="m", input=long_input, prompt_cache_key="sess-9")
    assert first.usage.input_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    assert second.usage.input_tokens_details.cached_tokens > 1000  # type: ignore[union-attr]


# -- Anthropic Messages -----------------------------------------------------------------------------------------
async def test_anthropic_create_and_stream_helper_agree(sim_url: str) -> None:
    client = ant(sim_url)
    msg = await client.messages.create(model="m", max_tokens=200, messages=USER)  # type: ignore[arg-type]
    assert msg.stop_reason == "end_turn" and msg.content[0].type == "text" and msg.usage.output_tokens > 0
    async with client.messages.stream(model="m", max_tokens=200, messages=USER) as stream:  # type: ignore[arg-type]
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == msg.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens == msg.usage.output_tokens and final.usage.input_tokens > 0


async def test_anthropic_tool_use_stream_and_beta_query(sim_url: str) -> None:
    client = ant(sim_url)
    async with client.messages.stream(
        model="m",
        max_tokens=200,
        messages=USER,
        tools=ANTH_TOOLS,  # type: ignore[arg-type]
        extra_query={"beta": "true"},
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "get_weather" and isinstance(tool.input, dict) and tool.input["city"]
    follow = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}]},
    ]
    answer = await client.messages.create(model="m", max_tokens=200, messages=follow, tools=ANTH_TOOLS)  # type: ignore[arg-type]
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"


async def test_anthropic_thinking_and_parallel_tools(sim_url: str) -> None:
    tools = [*ANTH_TOOLS, {"name": "Bash", "description": "run", "input_schema": BASH}]
    script = json.dumps({"parallel": True})
    async with ant(sim_url).messages.stream(
        model="m",
        max_tokens=2000,
        messages=USER,
        tools=tools,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers={"x-sim-script": script},
    ) as stream:
        final = await stream.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds[0] == "thinking" and kinds.count("tool_use") == 2
    assert final.content[0].signature  # type: ignore[union-attr]


async def test_anthropic_cache_control_usage(sim_url: str) -> None:
    client = ant(sim_url)
    system = [{"type": "text", "text": "You are a coding agent. " * 300, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(model="m", max_tokens=50, system=system, messages=USER)  # type: ignore[arg-type]
    second = await client.messages.create(
        model="m",
        max_tokens=50,
        system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "and now?"}],
    )
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


async def test_anthropic_count_tokens_and_models(sim_url: str) -> None:
    client = ant(sim_url)
    count = await client.messages.count_tokens(model="m", messages=USER)  # type: ignore[arg-type]
    assert count.input_tokens > 0
    page = await client.models.list()
    assert sorted(m.id for m in page.data) == ["mid", "strong", "weak"]
    oai_models = await oai(sim_url).models.list()
    assert sorted(m.id for m in oai_models.data) == ["mid", "strong", "weak"]


# -- auth, errors and faults --------------------------------------------------------------------------------
async def test_missing_key_is_401_in_each_dialect(sim_url: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as http:
        r = await http.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": USER})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = await http.post("/v1/chat/completions", json={"model": "m", "messages": USER})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.head("/")).status_code == 200


async def test_auth_can_be_turned_off() -> None:
    async with running_sim(SimConfig(ttft_ms=0, require_auth=False)) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/v1/chat/completions", json={"model": "m", "messages": USER})
        assert r.status_code == 200


async def test_invalid_requests_are_400(sim_url: str) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await ant(sim_url).messages.create(model="m", max_tokens=5, messages=[])
    with pytest.raises(openai.BadRequestError):
        await oai(sim_url).chat.completions.create(model="m", messages=[])


@pytest.mark.parametrize("status", [500, 503])
async def test_error_faults_by_header(sim_url: str, status: int) -> None:
    headers = {"x-sim-fault": str(status)}
    with pytest.raises(openai.InternalServerError) as oe:
        await oai(sim_url).chat.completions.create(model="m", messages=USER, extra_headers=headers)
    assert oe.value.status_code == status
    with pytest.raises(anthropic.InternalServerError) as ae:
        await ant(sim_url).messages.create(model="m", max_tokens=5, messages=USER, extra_headers=headers)  # type: ignore[arg-type]
    assert ae.value.status_code == status and ae.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_rate_limit_fault_has_retry_after(sim_url: str) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        await oai(sim_url).responses.create(model="m", input="hi", extra_headers={"x-sim-fault": "429:7"})
    assert exc.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.RateLimitError):
        await ant(sim_url).messages.create(
            model="m",
            max_tokens=5,
            messages=USER,  # type: ignore[arg-type]
            extra_headers={"x-sim-fault": "429"},
        )


async def test_timeout_fault_hangs_before_first_byte(sim_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=sim_url + "/v1", api_key="k", max_retries=0, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-sim-fault": "timeout:5"})
    assert 0.25 < time.monotonic() - started < 2


async def test_disconnect_fault_breaks_the_stream(sim_url: str) -> None:
    headers = {"x-sim-fault": "disconnect:4"}
    received = []
    with pytest.raises(TRANSPORT_ERRORS):
        async with ant(sim_url).messages.stream(
            model="m",
            max_tokens=100,
            messages=USER,  # type: ignore[arg-type]
            extra_headers=headers,
        ) as stream:
            async for event in stream:
                received.append(event.type)
    assert 0 < len(received) <= 4
    with pytest.raises(openai.APIConnectionError):
        await oai(sim_url).chat.completions.create(model="m", messages=USER, extra_headers=headers)


async def test_malformed_fault_breaks_parsing(sim_url: str) -> None:
    stream = await oai(sim_url).chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers={"x-sim-fault": "malformed:2"}
    )
    seen = 0
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's SSE decoder
        async for _ in stream:
            seen += 1
    assert seen == 2


async def test_slow_fault_paces_the_stream(sim_url: str) -> None:
    started = time.monotonic()
    stream = await oai(sim_url).chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers={"x-sim-fault": "slow:100"}
    )
    tokens = len([c async for c in stream if c.choices and c.choices[0].delta.content])
    assert time.monotonic() - started >= (tokens - 1) / 100 * 0.9 and tokens >= 10


async def test_runtime_faults_count_model_filter_and_stats(sim_url: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as http:
        r = await http.post("/sim/faults", json={"kind": "503", "count": 2, "model": "weak"})
        assert r.status_code == 200 and len(r.json()["faults"]) == 1
        assert (await http.post("/sim/faults", json={"kind": "nope"})).status_code == 400
        client = oai(sim_url)
        await client.chat.completions.create(model="strong", messages=USER)  # other model: untouched
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="weak", messages=USER)
        await client.chat.completions.create(model="weak", messages=USER)  # count used up
        await http.post("/sim/faults", json={"kind": "error", "status": 500})
        assert (await http.delete("/sim/faults")).json() == {"cleared": 1}
        await ant(sim_url).messages.create(model="weak", max_tokens=5, messages=USER)  # type: ignore[arg-type]
        stats = (await http.get("/sim/stats")).json()
        assert stats["requests"]["weak"] == {"openai_chat": 3, "anthropic_messages": 1}
        assert stats["requests"]["strong"] == {"openai_chat": 1}
        assert stats["faults_injected"] == {"error": 2} and stats["total"] == 5


async def test_config_fault_with_probability_is_reproducible() -> None:
    async def run() -> list[int]:
        config = SimConfig(ttft_ms=0, faults=[{"kind": "500", "probability": 0.5}], seed=7)  # type: ignore[list-item]
        async with running_sim(config) as url, httpx.AsyncClient(base_url=url, headers={"x-api-key": "k"}) as http:
            return [
                (await http.post("/v1/chat/completions", json={"model": "m", "messages": USER})).status_code
                for _ in range(20)
            ]

    first = await run()
    assert first == await run() and {200, 500} == set(first)


# -- skill, tasks, drift ------------------------------------------------------------------------------------
async def test_task_marker_outcome_endpoint_and_drift(sim_url: str) -> None:
    headers = {"x-sim-task": "swe-123"}
    strong = await oai(sim_url).chat.completions.create(model="strong", messages=USER, extra_headers=headers)
    weak = await ant(sim_url).messages.create(model="weak", max_tokens=100, messages=USER, extra_headers=headers)  # type: ignore[arg-type]
    assert PASS_MARKER in (strong.choices[0].message.content or "")
    assert FAIL_MARKER in weak.content[0].text  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=sim_url) as http:
        out = (await http.get("/sim/outcome", params={"model": "weak", "task": "swe-123"})).json()
        assert out == {"model": "weak", "task": "swe-123", "skill": 0.0, "success": False}
        r = await http.post("/sim/skill", json={"model": "weak", "skill": 1.0})
        assert r.json() == {"model": "weak", "skill": 1.0}
        assert (await http.post("/sim/skill", json={"model": "weak", "skill": 3})).status_code == 400
        out = (await http.get("/sim/outcome", params={"model": "weak", "task": "swe-123"})).json()
        assert out["success"] is True
    after = await ant(sim_url).messages.create(model="weak", max_tokens=100, messages=USER, extra_headers=headers)  # type: ignore[arg-type]
    assert PASS_MARKER in after.content[0].text  # type: ignore[union-attr]


async def test_same_answer_across_dialects(sim_url: str) -> None:
    chat = await oai(sim_url).chat.completions.create(model="m", messages=USER)
    resp = await oai(sim_url).responses.create(model="m", input=USER)  # type: ignore[arg-type]
    msg = await ant(sim_url).messages.create(model="m", max_tokens=500, messages=USER)  # type: ignore[arg-type]
    assert chat.choices[0].message.content == resp.output_text == msg.content[0].text  # type: ignore[union-attr]


# -- latency -----------------------------------------------------------------------------------------------
async def test_ttft_and_token_rate_are_applied() -> None:
    async with running_sim(SimConfig(ttft_ms=150, tokens_per_s=200, reply_tokens=40)) as url:
        started = time.monotonic()
        first_token = None
        stream = await oai(url).chat.completions.create(model="m", messages=USER, stream=True)
        async for chunk in stream:
            if first_token is None and chunk.choices and chunk.choices[0].delta.content:
                first_token = time.monotonic() - started
        total = time.monotonic() - started
    assert first_token is not None and 0.14 < first_token < 0.5
    assert total >= 0.15 + 25 / 200  # at least 30 tokens at 200/s after the first


# -- captured real-client requests ---------------------------------------------------------------------------
# Whether a model would call a tool: for a question about a file (Claude Code's and Codex's "What does
# hello.py print?"), yes; after the tool result, or for "hi", no.
@pytest.mark.parametrize(
    ("name", "calls_tool"),
    [
        ("claude_code_turn1_messages.json", True),
        ("claude_code_turn2_tool_result_messages.json", False),
        ("claude_code_haiku_messages.json", False),
        ("codex_turn1_responses.json", True),
        ("codex_turn2_function_call_output_responses.json", False),
        ("aider_chat_completions_stream.json", False),
        ("openai_sdk_chat_stream_tools.json", False),
        ("anthropic_sdk_messages_stream_tools.json", False),
        ("openai_sdk_responses_stream.json", False),
    ],
)
async def test_captured_client_requests_get_well_formed_streams(sim_url: str, name: str, calls_tool: bool) -> None:
    path = CAPTURED / name
    if not path.exists():
        missing("captured requests not available")
    captured = json.loads(path.read_text())
    body = captured["body"]
    async with httpx.AsyncClient(base_url=sim_url, headers={"x-api-key": "dummy"}) as http:
        r = await http.post(captured["path"], params=captured["query"], json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    datas = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    if captured["path"] == "/v1/chat/completions":
        assert datas[-1] == "[DONE]"
        datas = datas[:-1]
    payloads = [json.loads(d) for d in datas]
    if captured["path"] == "/v1/messages":
        assert payloads[-1]["type"] == "message_stop"
        stop = next(p for p in payloads if p["type"] == "message_delta")["delta"]["stop_reason"]
        assert stop == ("tool_use" if calls_tool else "end_turn")
    elif captured["path"] == "/v1/responses":
        final = payloads[-1]["response"]
        assert payloads[-1]["type"] == "response.completed"
        kinds = [o["type"] for o in final["output"]]
        assert ("function_call" in kinds) == calls_tool
        if calls_tool:  # Codex's shell tool, told to look at the file asked about
            call = next(o for o in final["output"] if o["type"] == "function_call")
            assert call["name"] == "exec_command" and json.loads(call["arguments"])["cmd"] == "cat hello.py"
    else:
        finish = [p["choices"][0]["finish_reason"] for p in payloads if p["choices"]][-1]
        assert finish == ("tool_calls" if calls_tool else "stop")


def test_thread_runner_with_sync_clients() -> None:
    with running_sim_thread(SimConfig(ttft_ms=0, tokens_per_s=0)) as url:
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=5)
        with client.messages.stream(model="m", max_tokens=100, messages=USER) as stream:  # type: ignore[arg-type]
            assert stream.get_final_message().stop_reason == "end_turn"
        chat = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=5)
        assert chat.chat.completions.create(model="m", messages=USER).choices[0].message.content  # type: ignore[arg-type]
