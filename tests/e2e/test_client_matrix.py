"""The client matrix: real SDKs and agent CLIs, at pinned versions, through one ``weave-router up`` on
the embedded default (simulated providers, no keys), each configured the way the README tells a user.

For every client: (a) a plain prompt gets the simulator's answer ("Looking at <the prompt's last
words>.") and no tool runs; (b) a streamed answer arrives as SSE (the simulator counts the streamed
requests it got; the SDK sees several text deltas); (c) a tool round trip whose effect is checked: an
SDK's function tool is executed and the answer after it is the simulator's "Done: checked the tool
output." (said only when the request ends in a tool result); an agent CLI edits a file on disk (the
simulator scripted with ``x-sim-script``).

Tests of this module share one service and run one after another (pytest-xdist ``--dist loadfile``),
so the simulator's counters before and after a test tell what that test sent. ``-s`` prints the matrix.
The clients are installed by ``./dev test`` (package.json, the ``e2e`` extra, .venv-aider): a missing
client fails its tests.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _service import Service, child_env, get_json, running_service

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_BIN = ROOT / "node_modules" / ".bin"
AIDER = ROOT / ".venv-aider" / "bin" / "aider"
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120
PLAIN_PROMPT = "Say hello to the matrix."
PLAIN_ANSWER = "Looking at hello the matrix."  # the simulator's lead: the prompt's last three words
TOOL_PROMPT = "What is the weather in Paris? Use the weather tool."
FINAL_ANSWER = "Done: checked the tool output."
MODEL = "router/auto"


def _version(package: str) -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


# -- the matrix printed at the end of the module (-s) ----------------------------------------------------
_MATRIX: dict[tuple[str, str], dict[str, str]] = {}


def _record(client: str, version: str, column: str) -> None:
    _MATRIX.setdefault((client, version), {})[column] = "ok"


@pytest.fixture(scope="module", autouse=True)
def _print_matrix() -> Iterator[None]:
    yield
    if not _MATRIX:
        return
    columns = ("plain", "stream", "tools")
    rows = [(c, v, *(cells.get(k, "-") for k in columns)) for (c, v), cells in sorted(_MATRIX.items())]
    head = ("client", "version", *columns)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    print("\n" + "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]))


# -- the service --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("weave-matrix"), START_TIMEOUT_S) as service:
        yield service


class SimCounts:
    """The simulator's request and stream counters before a client runs; ``added`` gives what it sent."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.before = get_json(f"{service.sim_url}/sim/stats")

    def added(self) -> tuple[int, int]:
        """(requests, streamed requests) since the snapshot."""
        now = get_json(f"{self.service.sim_url}/sim/stats")
        return now["total"] - self.before["total"], now["streams"] - self.before["streams"]


def _run(args: list[str], service: Service, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    cwd = cwd or ROOT
    env = {**(env or child_env()), "PWD": str(cwd)}  # opencode finds its project (and opencode.json) by $PWD
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip
    log = service.log.read_text()[-3000:]
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}\nservice log:\n{log}"
    )
    return proc.stdout


# -- Vercel AI SDK (node) -------------------------------------------------------------------------------------
AI_SDK = [
    pytest.param("openai-chat", "@ai-sdk/openai", id="openai.chat"),
    pytest.param("openai-responses", "@ai-sdk/openai", id="openai.responses"),
    pytest.param("anthropic", "@ai-sdk/anthropic", id="anthropic"),
]


def _ai_sdk(service: Service, flavour: str, mode: str, prompt: str) -> dict[str, Any]:
    out = _run(["node", str(CLIENTS / "ai_sdk.mjs"), flavour, mode, service.url, MODEL, prompt], service)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _ai_sdk_name(flavour: str, package: str) -> tuple[str, str]:
    call = {"openai-chat": "openai.chat", "openai-responses": "openai.responses", "anthropic": "anthropic"}
    return f"ai-sdk {call[flavour]}", f"ai {_version('ai')}, {package} {_version(package)}"


@pytest.mark.parametrize(("flavour", "package"), AI_SDK)
def test_ai_sdk_plain(service: Service, flavour: str, package: str) -> None:
    counts = SimCounts(service)
    result = _ai_sdk(service, flavour, "plain", PLAIN_PROMPT)
    assert result["text"].startswith(PLAIN_ANSWER), result
    assert result["toolCalls"] == [] and result["executed"] == [] and result["steps"] == 1, result
    assert counts.added() == (1, 0)
    _record(*_ai_sdk_name(flavour, package), "plain")


@pytest.mark.parametrize(("flavour", "package"), AI_SDK)
def test_ai_sdk_stream(service: Service, flavour: str, package: str) -> None:
    counts = SimCounts(service)
    result = _ai_sdk(service, flavour, "stream", PLAIN_PROMPT)
    assert result["text"].startswith(PLAIN_ANSWER), result
    assert result["chunks"] > 5 and result["toolCalls"] == [], result  # deltas, not one block
    assert counts.added() == (1, 1)
    _record(*_ai_sdk_name(flavour, package), "stream")


@pytest.mark.parametrize(("flavour", "package"), AI_SDK)
def test_ai_sdk_tool_round_trip(service: Service, flavour: str, package: str) -> None:
    counts = SimCounts(service)
    result = _ai_sdk(service, flavour, "tools", TOOL_PROMPT)
    assert result["toolCalls"] == ["get_weather"] and len(result["executed"]) == 1, result
    assert result["steps"] == 2 and result["text"].startswith(FINAL_ANSWER), result
    assert counts.added() == (2, 0)
    _record(*_ai_sdk_name(flavour, package), "tools")


# -- Python SDKs (the e2e extra), in process ----------------------------------------------------------------
def _dist(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _weather_log() -> tuple[list[str], Any]:
    """A function tool as an application writes it, and the list of cities it was run for."""
    seen: list[str] = []

    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        seen.append(city)
        return f"{city}: 21 C, sunny"

    return seen, get_weather


AGENTS_MODELS = [pytest.param("responses", id="responses"), pytest.param("chat", id="chat-completions")]


def _agents_agent(service: Service, api: str) -> tuple[Any, list[str]]:
    from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # the SDK's own trace export goes to OpenAI
    client = AsyncOpenAI(base_url=f"{service.url}/v1", api_key="x")
    model_cls = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    seen, get_weather = _weather_log()
    agent = Agent(name="assistant", instructions="Answer briefly.", model=model_cls(model=MODEL, openai_client=client),
                  tools=[function_tool(get_weather)])  # fmt: skip
    return agent, seen


@pytest.mark.parametrize("api", AGENTS_MODELS)
async def test_openai_agents(service: Service, api: str) -> None:
    from agents import Runner

    name = (f"openai-agents ({api})", _dist("openai-agents"))
    agent, seen = _agents_agent(service, api)
    counts = SimCounts(service)
    result = await Runner.run(agent, PLAIN_PROMPT)
    assert str(result.final_output).startswith(PLAIN_ANSWER), result.final_output
    assert seen == [] and counts.added() == (1, 0)
    _record(*name, "plain")

    counts = SimCounts(service)
    streamed = Runner.run_streamed(agent, PLAIN_PROMPT)
    deltas = [e.data.delta async for e in streamed.stream_events()
              if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]  # fmt: skip
    assert len(deltas) > 5 and "".join(deltas).startswith(PLAIN_ANSWER), deltas
    assert counts.added() == (1, 1)
    _record(*name, "stream")

    counts = SimCounts(service)
    result = await Runner.run(agent, TOOL_PROMPT)
    assert len(seen) == 1, seen
    assert str(result.final_output).startswith(FINAL_ANSWER), result.final_output
    assert counts.added() == (2, 0)
    _record(*name, "tools")


LANGCHAIN = [
    pytest.param("chat", id="langchain-openai-chat"),
    pytest.param("responses", id="langchain-openai-responses"),
    pytest.param("anthropic", id="langchain-anthropic"),
]


def _langchain_model(service: Service, flavour: str) -> tuple[Any, tuple[str, str]]:
    if flavour == "anthropic":
        from langchain_anthropic import ChatAnthropic

        llm: Any = ChatAnthropic(model=MODEL, base_url=service.url, api_key="x")
        return llm, ("langchain-anthropic", _dist("langchain-anthropic"))
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=f"{service.url}/v1", api_key="x",
                     use_responses_api=flavour == "responses")  # fmt: skip
    return llm, (f"langchain-openai ({flavour})", _dist("langchain-openai"))


@pytest.mark.parametrize("flavour", LANGCHAIN)
def test_langchain(service: Service, flavour: str) -> None:
    from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool

    llm, name = _langchain_model(service, flavour)
    seen, get_weather = _weather_log()
    weather = tool(get_weather)

    counts = SimCounts(service)
    answer = llm.bind_tools([weather]).invoke(PLAIN_PROMPT)
    assert answer.text.startswith(PLAIN_ANSWER) and answer.tool_calls == [], answer
    assert counts.added() == (1, 0)
    _record(*name, "plain")

    counts = SimCounts(service)
    chunks = [c.text for c in llm.stream(PLAIN_PROMPT)]
    assert len([c for c in chunks if c]) > 5 and "".join(chunks).startswith(PLAIN_ANSWER), chunks
    assert counts.added() == (1, 1)
    _record(*name, "stream")

    # The tool loop as LangChain's docs write it: call, run the tool, send a ToolMessage back.
    counts = SimCounts(service)
    bound = llm.bind_tools([weather])
    messages: list[BaseMessage] = [HumanMessage(TOOL_PROMPT)]
    call = bound.invoke(messages)
    assert [c["name"] for c in call.tool_calls] == ["get_weather"], call
    messages.append(call)
    messages += [ToolMessage(weather.invoke(c["args"]), tool_call_id=c["id"]) for c in call.tool_calls]
    final = bound.invoke(messages)
    assert len(seen) == 1 and final.text.startswith(FINAL_ANSWER), final
    assert counts.added() == (2, 0)
    _record(*name, "tools")


PYDANTIC_AI = [
    pytest.param("openai-chat", id="openai-chat"),
    pytest.param("openai-responses", id="openai-responses"),
    pytest.param("anthropic", id="anthropic"),
]


def _pydantic_ai_model(service: Service, flavour: str) -> Any:
    if flavour == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        return AnthropicModel(MODEL, provider=AnthropicProvider(base_url=service.url, api_key="x"))
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{service.url}/v1", api_key="x")
    if flavour == "openai-chat":
        return OpenAIChatModel(MODEL, provider=provider)
    return OpenAIResponsesModel(MODEL, provider=provider)


@pytest.mark.parametrize("flavour", PYDANTIC_AI)
async def test_pydantic_ai(service: Service, flavour: str) -> None:
    from pydantic_ai import Agent

    name = (f"pydantic-ai ({flavour})", _dist("pydantic-ai-slim"))
    seen, get_weather = _weather_log()
    agent = Agent(_pydantic_ai_model(service, flavour), tools=[get_weather])

    counts = SimCounts(service)
    result = await agent.run(PLAIN_PROMPT)
    assert result.output.startswith(PLAIN_ANSWER) and seen == [], result.output
    assert counts.added() == (1, 0)
    _record(*name, "plain")

    counts = SimCounts(service)
    async with agent.run_stream(PLAIN_PROMPT) as run:
        deltas = [d async for d in run.stream_text(delta=True, debounce_by=None)]
    assert len(deltas) > 5 and "".join(deltas).startswith(PLAIN_ANSWER), deltas
    assert counts.added() == (1, 1)
    _record(*name, "stream")

    counts = SimCounts(service)
    result = await agent.run(TOOL_PROMPT)
    assert len(seen) == 1 and result.output.startswith(FINAL_ANSWER), result.output
    assert counts.added() == (2, 0)
    _record(*name, "tools")


# -- aider (its own venv) --------------------------------------------------------------------------------------
AIDER_EDIT = "hello.py\n```python\n<<<<<<< SEARCH\nprint('hello')\n=======\nprint('bye')\n>>>>>>> REPLACE\n```\n"


def _aider(
    service: Service, tmp_path: Path, prompt: str, *args: str, script: dict[str, Any] | None = None
) -> tuple[str, Path]:
    """aider on the README's recipe (``--model openai/router/auto --openai-api-base <gateway>/v1``), one
    ``--message`` and exit; ``script`` travels as a header from a model settings file."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    settings: list[dict[str, Any]] = [{"name": f"openai/{MODEL}", "edit_format": "diff"}]
    if script is not None:
        settings[0]["extra_params"] = {"extra_headers": {"x-sim-script": json.dumps(script)}}
    (work / "models.yml").write_text(json.dumps(settings))  # JSON is YAML
    env = {**child_env(), "HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = _run([str(AIDER), "--model", f"openai/{MODEL}", "--openai-api-base", f"{service.url}/v1",
                "--openai-api-key", "x", "--model-settings-file", "models.yml", "--yes-always", "--no-git",
                "--no-check-update", "--no-analytics", "--no-show-release-notes", "--no-show-model-warnings",
                "--no-pretty", "--no-fancy-input", *args, "--message", prompt, "hello.py"],
               service, cwd=work, env=env)  # fmt: skip
    return out, work


def _aider_version() -> tuple[str, str]:
    proc = subprocess.run([str(AIDER), "--version"], capture_output=True, text=True, timeout=60, check=True)
    return "aider", proc.stdout.split()[-1]


# aider appends its own reminder to the user's message: the simulator's lead quotes that, not the prompt.
AIDER_ANSWER = re.compile(r"^Looking at \w.*\.", re.M)


def test_aider_plain(service: Service, tmp_path: Path) -> None:
    counts = SimCounts(service)
    out, work = _aider(service, tmp_path, PLAIN_PROMPT, "--no-stream")
    assert AIDER_ANSWER.search(out), out
    assert "Applied edit" not in out and (work / "hello.py").read_text() == "print('hello')\n"
    assert counts.added() == (1, 0)
    _record(*_aider_version(), "plain")


def test_aider_stream(service: Service, tmp_path: Path) -> None:
    counts = SimCounts(service)
    out, work = _aider(service, tmp_path, PLAIN_PROMPT, "--stream")
    assert AIDER_ANSWER.search(out), out
    assert (work / "hello.py").read_text() == "print('hello')\n"
    assert counts.added() == (1, 1)
    _record(*_aider_version(), "stream")


def test_aider_edits_the_file(service: Service, tmp_path: Path) -> None:
    """aider edits in text (SEARCH/REPLACE blocks), not with tools: the scripted reply is one."""
    counts = SimCounts(service)
    out, work = _aider(service, tmp_path, "Change hello.py so that it prints bye.", script={"text": AIDER_EDIT})
    assert "Applied edit to hello.py" in out, out
    assert (work / "hello.py").read_text() == "print('bye')\n"
    assert counts.added()[0] == 1
    _record(*_aider_version(), "tools")


# -- opencode (npm) -------------------------------------------------------------------------------------------
EDIT_SCRIPT = {"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}}


def _opencode(
    service: Service, tmp_path: Path, prompt: str, script: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], Path]:
    """``opencode run`` with the README's opencode.json (an OpenAI-compatible provider on the gateway)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    options: dict[str, Any] = {"baseURL": f"{service.url}/v1", "apiKey": "x"}
    if script is not None:
        options["headers"] = {"x-sim-script": json.dumps(script)}
    config = {
        "$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
        "provider": {"weave": {"npm": "@ai-sdk/openai-compatible", "name": "Weave Router", "options": options,
                               "models": {MODEL: {"name": MODEL}}}},
        "model": f"weave/{MODEL}", "small_model": f"weave/{MODEL}",
    }  # fmt: skip
    (work / "opencode.json").write_text(json.dumps(config))
    env = {**child_env(), "HOME": str(home), "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    out = _run([str(NODE_BIN / "opencode"), "run", "--format", "json", prompt], service, cwd=work, env=env)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")], work


def _opencode_name() -> tuple[str, str]:
    return "opencode", _version("opencode-ai")


def test_opencode_plain_prompt_streamed(service: Service, tmp_path: Path) -> None:
    """opencode always streams: the plain answer's requests all came as SSE."""
    counts = SimCounts(service)
    events, work = _opencode(service, tmp_path, PLAIN_PROMPT)
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert texts and texts[-1].startswith(PLAIN_ANSWER), events
    assert not [e for e in events if e.get("type") == "tool_use"], events
    assert (work / "hello.py").read_text() == "print('hello')\n"
    requests, streams = counts.added()
    assert requests >= 1 and streams == requests, (requests, streams)
    _record(*_opencode_name(), "plain")
    _record(*_opencode_name(), "stream")


def test_opencode_edits_the_file(service: Service, tmp_path: Path) -> None:
    events, work = _opencode(service, tmp_path, "Change hello.py so that it prints bye.", EDIT_SCRIPT)
    tools = [e["part"] for e in events if e.get("type") == "tool_use"]
    assert [(t["tool"], t["state"]["status"]) for t in tools] == [("edit", "completed")], tools
    assert (work / "hello.py").read_text() == "print('bye')\n"
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert texts and texts[-1].startswith(FINAL_ANSWER), events
    _record(*_opencode_name(), "tools")


# -- qwen-code (npm) -------------------------------------------------------------------------------------------
def _qwen(service: Service, tmp_path: Path, prompt: str, edit: bool = False) -> tuple[dict[str, Any], list[Any], Path]:
    """``qwen -p`` headless with the README's settings.json: an ``openai`` model provider on the gateway."""
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".qwen").mkdir(parents=True)
    work.mkdir()
    (work / "hello.py").write_text("print('hello')\n")
    provider: dict[str, Any] = {
        "id": MODEL,
        "name": "Weave Router",
        "envKey": "WEAVE_KEY",
        "baseUrl": f"{service.url}/v1",
    }
    if edit:
        # qwen-code's file tools want an absolute path, and its edit tool a read of the file first (two
        # model turns, one script can't say both): the scripted edit writes a new file (write_file).
        script = {"edit": {"path": str(work / "bye.py"), "new": "print('bye')"}}
        provider["generationConfig"] = {"customHeaders": {"x-sim-script": json.dumps(script)}}
    settings = {"security": {"auth": {"selectedType": "openai"}}, "model": {"name": MODEL},
                "telemetry": {"enabled": False}, "privacy": {"usageStatisticsEnabled": False},
                "modelProviders": {"openai": [provider]}}  # fmt: skip
    (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
    env = {**child_env(), "HOME": str(home), "WEAVE_KEY": "x"}
    out = _run([str(NODE_BIN / "qwen"), "-p", prompt, "--output-format", "json", "--yolo"], service, cwd=work, env=env)
    messages = json.loads(out)
    result = next(m for m in messages if m.get("type") == "result")
    return result, messages, work


def _qwen_name() -> tuple[str, str]:
    return "qwen-code", _version("@qwen-code/qwen-code")


def test_qwen_code_plain_prompt_streamed(service: Service, tmp_path: Path) -> None:
    counts = SimCounts(service)
    result, messages, work = _qwen(service, tmp_path, PLAIN_PROMPT)
    assert result["is_error"] is False and result["result"].startswith(PLAIN_ANSWER), result
    # (qwen-code counts a read_file of its own at start, not the model's: the transcript has no tool call)
    blocks = [b for m in messages if m.get("type") == "assistant" for b in m["message"]["content"]]
    assert blocks and all(b["type"] == "text" for b in blocks), blocks
    assert (work / "hello.py").read_text() == "print('hello')\n"
    requests, streams = counts.added()
    assert requests >= 1 and streams == requests, (requests, streams)
    _record(*_qwen_name(), "plain")
    _record(*_qwen_name(), "stream")


def test_qwen_code_edits_the_file(service: Service, tmp_path: Path) -> None:
    result, messages, work = _qwen(service, tmp_path, "Create a file bye.py that prints bye.", edit=True)
    transcript = json.dumps([m.get("message") for m in messages])[-3000:]
    assert (work / "bye.py").exists() and (work / "bye.py").read_text().strip() == "print('bye')", transcript
    tools = result["stats"]["tools"]
    assert tools["totalSuccess"] == 1 and tools["totalFail"] == 0, tools
    assert result["result"].startswith(FINAL_ANSWER), result
    _record(*_qwen_name(), "tools")
