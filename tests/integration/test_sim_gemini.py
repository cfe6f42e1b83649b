"""The simulated provider's Gemini API over real HTTP, as gemini-cli's genai client calls it: whole and
SSE-streamed answers, function calls and responses, thinking, token counting, the model list, keys by
header or ``?key=``, Google-shaped errors, faults and scripts."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from streams.providers.sim import PASS_MARKER, SimConfig, running_sim

KEY = {"x-goog-api-key": "test-key"}
SHELL = {
    "name": "run_shell_command",
    "description": "Runs a shell command",
    "parametersJsonSchema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
WEATHER = {  # the older OpenAPI-style schema, types in capitals
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
}


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "systemInstruction": {"parts": [{"text": "You are a CLI agent."}]},
        "tools": [{"functionDeclarations": [SHELL, WEATHER]}],
        "generationConfig": {"temperature": 1, "maxOutputTokens": 500},
        **extra,
    }


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    config = SimConfig(ttft_ms=0, tokens_per_s=0, reply_tokens=20, models={"gemini-sim": 1.0})
    async with running_sim(config) as url, httpx.AsyncClient(base_url=url + "/v1beta", timeout=10) as client:
        yield client


def _sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_generate_content_answers_a_question_in_text(http: httpx.AsyncClient) -> None:
    r = await http.post("/models/gemini-sim:generateContent", json=_body("What is 2+2?"), headers=KEY)
    assert r.status_code == 200, r.text
    out = r.json()
    candidate = out["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["index"] == 0
    assert candidate["content"]["role"] == "model" and candidate["content"]["parts"][0]["text"]
    use = out["usageMetadata"]
    assert use["promptTokenCount"] > 0 and use["candidatesTokenCount"] > 0
    assert use["totalTokenCount"] == use["promptTokenCount"] + use["candidatesTokenCount"]
    assert out["modelVersion"] == "gemini-sim" and out["responseId"]


async def test_stream_is_sse_of_chunks_that_add_up_to_the_whole_answer(http: httpx.AsyncClient) -> None:
    whole = (await http.post("/models/gemini-sim:generateContent", json=_body("say hello"), headers=KEY)).json()
    r = await http.post(
        "/models/gemini-sim:streamGenerateContent", params={"alt": "sse"}, json=_body("say hello"), headers=KEY
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = _sse(r.text)
    assert len(chunks) > 3
    text = "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None] * (len(chunks) - 1) + ["STOP"]
    assert chunks[-1]["usageMetadata"] == whole["usageMetadata"]
    # Without alt=sse the same chunks come as one JSON array.
    array = await http.post("/models/gemini-sim:streamGenerateContent", json=_body("say hello"), headers=KEY)
    assert [c["candidates"][0]["content"] for c in array.json()] == [c["candidates"][0]["content"] for c in chunks]


async def test_function_call_then_function_response_round_trip(http: httpx.AsyncClient) -> None:
    body = _body("Run the tests")
    r = await http.post("/models/gemini-sim:streamGenerateContent?alt=sse", json=body, headers=KEY)
    chunks = _sse(r.text)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    calls = [p["functionCall"] for p in parts if "functionCall" in p]
    assert calls == [{"name": "run_shell_command", "args": {"command": "pytest -q"}}]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    body["contents"] += [
        {"role": "model", "parts": parts},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "run_shell_command", "response": {"output": "3 passed"}}}],
        },
    ]
    answer = (await http.post("/models/gemini-sim:generateContent", json=body, headers=KEY)).json()
    answer_parts = answer["candidates"][0]["content"]["parts"]
    assert [list(p) for p in answer_parts] == [["text"]]
    assert answer_parts[0]["text"].startswith("Done: checked the tool output.")


async def test_named_tool_uppercase_schema_and_forced_calling(http: httpx.AsyncClient) -> None:
    out = (await http.post("/models/m:generateContent", json=_body("What is the weather in Oslo?"), headers=KEY)).json()
    call = out["candidates"][0]["content"]["parts"][-1]["functionCall"]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)  # STRING read as a string
    forced = _body(
        "say hello", toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    )
    out = (await http.post("/models/m:generateContent", json=forced, headers=KEY)).json()
    assert out["candidates"][0]["content"]["parts"][-1]["functionCall"]["name"] == "get_weather"
    never = _body("Run the tests", toolConfig={"functionCallingConfig": {"mode": "NONE"}})
    out = (await http.post("/models/m:generateContent", json=never, headers=KEY)).json()
    assert all("functionCall" not in p for p in out["candidates"][0]["content"]["parts"])


async def test_thinking_parts_signature_and_thought_tokens(http: httpx.AsyncClient) -> None:
    config = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": -1}}
    out = (
        await http.post("/models/m:generateContent", json=_body("Run the tests", generationConfig=config), headers=KEY)
    ).json()
    parts = out["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[0]["text"]
    call = next(p for p in parts if "functionCall" in p)
    assert call["thoughtSignature"]
    use = out["usageMetadata"]
    assert use["thoughtsTokenCount"] > 0
    assert use["totalTokenCount"] == use["promptTokenCount"] + use["candidatesTokenCount"] + use["thoughtsTokenCount"]


async def test_max_output_tokens_and_task_verdict(http: httpx.AsyncClient) -> None:
    body = _body("say hello", generationConfig={"maxOutputTokens": 3})
    out = (await http.post("/models/m:generateContent", json=body, headers=KEY)).json()
    assert out["candidates"][0]["finishReason"] == "MAX_TOKENS" and out["usageMetadata"]["candidatesTokenCount"] == 3
    headers = {**KEY, "x-sim-task": "swe-1"}
    out = (await http.post("/models/gemini-sim:generateContent", json=_body("say hello"), headers=headers)).json()
    assert out["candidates"][0]["content"]["parts"][0]["text"].startswith(PASS_MARKER)


async def test_json_mode_answers_with_a_value_of_the_schema(http: httpx.AsyncClient) -> None:
    # gemini-cli's routing classifier: capitalised types, a score it validates as 1..100.
    schema = {
        "type": "OBJECT",
        "properties": {"complexity_reasoning": {"type": "STRING"}, "complexity_score": {"type": "INTEGER"}},
        "required": ["complexity_reasoning", "complexity_score"],
    }
    config = {"responseMimeType": "application/json", "responseJsonSchema": schema}
    body = {"contents": _body("say hello")["contents"], "generationConfig": config}
    out = (await http.post("/models/m:generateContent", json=body, headers=KEY)).json()
    value = json.loads(out["candidates"][0]["content"]["parts"][0]["text"])
    assert isinstance(value["complexity_reasoning"], str) and 1 <= value["complexity_score"] <= 100


async def test_count_tokens_and_models(http: httpx.AsyncClient) -> None:
    r = await http.post("/models/m:countTokens", json={"contents": _body("hi")["contents"]}, headers=KEY)
    assert r.status_code == 200 and r.json()["totalTokens"] > 0
    wrapped = {"generateContentRequest": {"model": "models/m", **_body("hi")}}
    assert (await http.post("/models/m:countTokens", json=wrapped, headers=KEY)).json()["totalTokens"] > 0
    listing = (await http.get("/models", headers=KEY)).json()
    assert [m["name"] for m in listing["models"]] == ["models/gemini-sim"]
    one = (await http.get("/models/gemini-sim", headers=KEY)).json()
    assert one["name"] == "models/gemini-sim" and "generateContent" in one["supportedGenerationMethods"]


async def test_key_by_query_parameter_and_missing_key(http: httpx.AsyncClient) -> None:
    r = await http.post("/models/m:generateContent", params={"key": "k"}, json=_body("hi"))
    assert r.status_code == 200
    r = await http.post("/models/m:generateContent", json=_body("hi"))
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


async def test_errors_in_googles_shape(http: httpx.AsyncClient) -> None:
    r = await http.post("/models/m:generateContent", json={"contents": []}, headers=KEY)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and "contents" in error["message"]
    r = await http.post("/models/m:generateContent", content=b"{not json", headers=KEY)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = await http.post("/models/m:embedEverything", json=_body("hi"), headers=KEY)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


async def test_faults_and_scripts(http: httpx.AsyncClient) -> None:
    r = await http.post("/models/m:generateContent", json=_body("hi"), headers={**KEY, "x-sim-fault": "429:3"})
    assert r.status_code == 429 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert r.headers["retry-after"] == "3"
    r = await http.post("/models/m:generateContent", json=_body("hi"), headers={**KEY, "x-sim-fault": "503"})
    assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"
    with pytest.raises(httpx.TransportError):
        await http.post(
            "/models/m:streamGenerateContent?alt=sse", json=_body("hi"), headers={**KEY, "x-sim-fault": "disconnect:2"}
        )
    script = {"tool_calls": [{"name": "run_shell_command", "arguments": {"command": "touch x"}}]}
    headers = {**KEY, "x-sim-script": json.dumps(script)}
    out = (await http.post("/models/m:generateContent", json=_body("hi"), headers=headers)).json()
    call = out["candidates"][0]["content"]["parts"][-1]["functionCall"]
    assert call == {"name": "run_shell_command", "args": {"command": "touch x"}}
    stats = (await http.get("../sim/stats")).json()
    assert stats["by_dialect"]["gemini"] >= 3 and stats["faults_injected"]["rate_limit"] == 1


async def test_script_header_in_base64(http: httpx.AsyncClient) -> None:
    """gemini-cli's GEMINI_CLI_CUSTOM_HEADERS splits on commas: a script can travel base64-encoded."""
    script = {"edit": {"path": "hello.py", "old": "print('hello')", "new": "print('bye')"}}
    replace = {"name": "replace", "parametersJsonSchema": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}},
        "required": ["file_path", "old_string", "new_string"]}}  # fmt: skip
    body = {**_body("Change hello.py so that it prints bye."), "tools": [{"functionDeclarations": [SHELL, replace]}]}
    encoded = base64.urlsafe_b64encode(json.dumps(script).encode()).decode()
    headers = {**KEY, "x-sim-script": "base64:" + encoded}
    out = (await http.post("/models/m:generateContent", json=body, headers=headers)).json()
    call = out["candidates"][0]["content"]["parts"][-1]["functionCall"]
    assert call["name"] == "replace"
    assert {k: call["args"][k] for k in ("file_path", "old_string", "new_string")} == {
        "file_path": "hello.py", "old_string": "print('hello')", "new_string": "print('bye')"}  # fmt: skip
    bad = await http.post("/models/m:generateContent", json=body, headers={**KEY, "x-sim-script": "base64:%%%"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
