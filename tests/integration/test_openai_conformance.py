"""Every OpenAI payload the gateway answers, validated against the official OpenAPI spec.

For each provider dialect (Chat Completions, Responses, Anthropic Messages, Gemini) behind each OpenAI
client dialect (Chat Completions, Responses), whole and streamed: plain text, a tool call and the
tool-result turn after it, structured output (``json_schema``), reasoning, prompt-cache hits; then
errors (400, 404, upstream 503/429, a stream cut mid-way), stored responses and ``GET /v1/models``.
Whole bodies are checked against ``CreateChatCompletionResponse`` / ``Response`` / ``ErrorResponse``
/ ``ListModelsResponse``, every Chat chunk against ``CreateChatCompletionStreamResponse`` and every
Responses event against the ``ResponseStreamEvent`` member its ``type`` names.

Run with ``-s`` to see the tally (payload kind x provider dialect). A failure names each violation
by its JSON path.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from _gateway_harness import ALL_DIALECTS, MODEL_FOR, Stack, make_settings, running_stack, sse_frames

from tests._openapi import OpenAPISpec, official_spec

CLIENTS = ("openai_chat", "openai_responses")
PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses"}
TOOL = {"name": "Bash", "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
ASK = "List the python files in the repository"
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
# Long enough for a prompt-cache hit (OpenAI caches in 128-token blocks).
LONG_CONTEXT = "You review Python code for a large repository. " * 60
# Fewer output tokens than any simulated answer (16 is the Responses API's minimum).
TRUNCATED_AT = 16
# Providers whose simulated API reports a cache hit on turn 2: the OpenAI ones get the caller's
# prompt_cache_key (carried across the two OpenAI dialects), Anthropic the gateway's cache_control
# breakpoints. Gemini caches implicitly, and its simulator only for cachedContent.
CACHING_PROVIDERS = ("openai_chat", "openai_responses", "anthropic_messages")
# Providers whose simulated models think when asked to reason.
THINKING_PROVIDERS = ("anthropic_messages", "gemini")


# --- the tally --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Payloads validated per (kind, provider dialect), and every violation seen."""

    counts: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, kind: str, provider: str, ok: bool) -> None:
        self.counts[(kind, provider)][0 if ok else 1] += 1

    def table(self) -> str:
        kinds = sorted({k for k, _ in self.counts})
        providers = [p for p in (*ALL_DIALECTS, "-") if any(pp == p for _, pp in self.counts)]
        width = max([len(k) for k in kinds] + [12])
        lines = ["validated / failed".ljust(width) + "".join(f"{p:>22}" for p in providers)]
        for kind in kinds:
            cells = []
            for p in providers:
                ok, bad = self.counts.get((kind, p), [0, 0])
                cells.append(f"{f'{ok} / {bad}' if ok or bad else '':>22}")
            lines.append(kind.ljust(width) + "".join(cells))
        total_ok = sum(c[0] for c in self.counts.values())
        total_bad = sum(c[1] for c in self.counts.values())
        lines.append(f"total: {total_ok} validated, {total_bad} failed")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return official_spec()


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally()
    yield t
    print("\nOpenAI spec conformance (payload kind x provider dialect):\n" + t.table())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    settings = make_settings()
    for model in settings.models:
        model.capabilities.thinking = True  # reasoning requests reach the models, which think
    with running_stack(settings) as st:
        yield st


@dataclass
class Checker:
    """Validates payloads of one test and keeps its violations for one assertion at the end."""

    spec: OpenAPISpec
    tally: Tally
    client: str
    provider: str
    violations: list[str] = field(default_factory=list)

    def check(self, kind: str, schema: str, payload: Any) -> None:
        self._record(kind, schema, self.spec.errors(schema, payload))

    def check_event(self, kind: str, event: dict[str, Any]) -> None:
        schema, errors = self.spec.stream_event_errors(event)
        self._record(kind, f"{schema} ({event.get('type')})", errors)

    def _record(self, kind: str, what: str, errors: list[str]) -> None:
        self.tally.add(kind, self.provider, not errors)
        self.violations += [f"{self.client} <- {self.provider}: {kind} [{what}] {e}" for e in errors]

    def assert_clean(self) -> None:
        assert not self.violations, "payloads break the OpenAI spec:\n" + "\n".join(self.violations)


def checker(spec: OpenAPISpec, tally: Tally, client: str, provider: str) -> Checker:
    return Checker(spec, tally, client, provider)


# --- requests and their payloads ----------------------------------------------------------------------


def chat_body(model: str, scenario: str, call: tuple[str, str, str] | None = None, **extra: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Say hello"}]
    body: dict[str, Any] = {"model": model, "messages": messages, **extra}
    if scenario in ("tools", "tool_result"):
        messages[0]["content"] = ASK
        body["tools"] = [{"type": "function", "function": TOOL}]
        if call:
            cid, name, args = call
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]})
            messages.append({"role": "tool", "tool_call_id": cid, "content": "a.py\nb.py"})
    elif scenario == "structured":
        messages[0]["content"] = "Which city is the largest in Europe?"
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    elif scenario == "reasoning":
        messages[0]["content"] = "Why is the sky blue?"
        body["reasoning_effort"] = "medium"
    elif scenario == "cached":
        messages.insert(0, {"role": "system", "content": LONG_CONTEXT})
    elif scenario == "truncated":
        body["max_completion_tokens"] = TRUNCATED_AT
    return body


def responses_body(model: str, scenario: str, call: tuple[str, str, str] | None = None,
                   **extra: Any) -> dict[str, Any]:
    items: list[dict[str, Any]] = [{"role": "user", "content": "Say hello"}]
    body: dict[str, Any] = {"model": model, "input": items, **extra}
    if scenario in ("tools", "tool_result"):
        items[0]["content"] = ASK
        body["tools"] = [{"type": "function", **TOOL}]
        if call:
            cid, name, args = call
            items.append({"type": "function_call", "call_id": cid, "name": name, "arguments": args})
            items.append({"type": "function_call_output", "call_id": cid, "output": "a.py\nb.py"})
    elif scenario == "structured":
        items[0]["content"] = "Which city is the largest in Europe?"
        body["text"] = {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}}
    elif scenario == "reasoning":
        items[0]["content"] = "Why is the sky blue?"
        body["reasoning"] = {"effort": "medium", "summary": "auto"}
    elif scenario == "cached":
        body["instructions"] = LONG_CONTEXT
    elif scenario == "truncated":
        body["max_output_tokens"] = TRUNCATED_AT
    return body


def body_for(client: str, model: str, scenario: str, call: tuple[str, str, str] | None = None,
             **extra: Any) -> dict[str, Any]:
    return (chat_body if client == "openai_chat" else responses_body)(model, scenario, call, **extra)


@dataclass
class Answer:
    """What one request returned, reduced to the facts the tests assert on."""

    status: int
    body: dict[str, Any] | None  # the whole body, or the Responses stream's final response
    text: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    reasoning: str = ""
    cached_tokens: int = 0
    response_id: str | None = None
    incomplete: bool = False  # stopped at the output token limit


def _chat_answer(status: int, body: dict[str, Any]) -> Answer:
    msg = body["choices"][0]["message"]
    calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]
    cached = ((body.get("usage") or {}).get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Answer(status, body, msg.get("content") or "", calls, msg.get("reasoning_content") or "", cached,
                  incomplete=body["choices"][0]["finish_reason"] == "length")


def _responses_answer(status: int, body: dict[str, Any]) -> Answer:
    text, calls, reasoning = "", [], ""
    for item in body["output"]:
        if item["type"] == "message":
            text += "".join(c.get("text", "") for c in item["content"] if c["type"] == "output_text")
        elif item["type"] == "function_call":
            calls.append((item["call_id"], item["name"], item["arguments"]))
        elif item["type"] == "reasoning":
            reasoning += "".join(p.get("text", "") for p in (item.get("content") or item.get("summary") or []))
    cached = ((body.get("usage") or {}).get("input_tokens_details") or {}).get("cached_tokens") or 0
    return Answer(status, body, text, calls, reasoning, cached, body.get("id"),
                  incomplete=body.get("status") == "incomplete")


def call(st: Stack, ck: Checker, client: str, body: dict[str, Any], stream: bool, kind: str,
         headers: dict[str, str] | None = None) -> Answer:
    """POST ``body``, validate every payload of the answer under ``kind``, and read its facts."""
    if stream:
        body = {**body, "stream": True}
        if client == "openai_chat":
            body["stream_options"] = {"include_usage": True}
    with httpx.Client(base_url=st.url, timeout=30) as http:
        resp = http.post(PATH[client], json=body, headers={"authorization": "Bearer k", **(headers or {})})
    if not resp.headers.get("content-type", "").startswith("text/event-stream"):
        payload = resp.json()
        if resp.status_code != 200:
            ck.check(f"error {resp.status_code}", "ErrorResponse", payload)
            return Answer(resp.status_code, None)
        if client == "openai_chat":
            ck.check(f"chat {kind}", "CreateChatCompletionResponse", payload)
            return _chat_answer(resp.status_code, payload)
        ck.check(f"responses {kind}", "Response", payload)
        return _responses_answer(resp.status_code, payload)
    assert stream, "a stream answered a request that did not ask for one"
    if client == "openai_chat":
        return _chat_stream(ck, kind, resp)
    return _responses_stream(ck, kind, resp)


def _chat_stream(ck: Checker, kind: str, resp: httpx.Response) -> Answer:
    frames = sse_frames(resp.content)
    text, reasoning, cached, calls, error, finish = "", "", 0, {}, False, None
    for _, data in frames:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        if "error" in chunk:  # a failure after the stream started: the API's error object, as a chunk
            ck.check("chat stream error", "ErrorResponse", chunk)
            error = True
            continue
        ck.check(f"chat {kind} chunk", "CreateChatCompletionStreamResponse", chunk)
        if chunk.get("usage"):
            cached = (chunk["usage"].get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        for choice in chunk.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for tc in delta.get("tool_calls") or []:
                c = calls.setdefault(tc["index"], ["", "", ""])
                c[0] = tc.get("id") or c[0]
                c[1] = (tc.get("function") or {}).get("name") or c[1]
                c[2] += (tc.get("function") or {}).get("arguments") or ""
    answer = Answer(resp.status_code, None, text, [tuple(c) for _, c in sorted(calls.items())],  # type: ignore[misc]
                    reasoning, cached, incomplete=finish == "length")
    if error:  # the API ends a failed stream with its error object, no [DONE]
        return Answer(502, None)
    assert frames[-1][1] == "[DONE]", frames[-1:]
    return answer


def _responses_stream(ck: Checker, kind: str, resp: httpx.Response) -> Answer:
    final: dict[str, Any] | None = None
    for event, data in sse_frames(resp.content):
        payload = json.loads(data)
        ck.check_event(f"responses {kind} event" if payload.get("type") not in ("error", "response.failed")
                       else "responses stream error", payload)
        if event != payload.get("type"):
            ck.violations.append(f"responses {kind} event: SSE event {event!r} != type {payload.get('type')!r}")
        if payload.get("type") in ("response.completed", "response.incomplete"):
            final = payload["response"]
        elif payload.get("type") == "response.failed":
            return Answer(502, None)
    assert final is not None, "the stream ended without response.completed"
    return _responses_answer(resp.status_code, final)


# --- the successful turns -----------------------------------------------------------------------------

SCENARIOS = ("plain", "tools", "structured", "reasoning", "cached", "truncated")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("provider", ALL_DIALECTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_answers_follow_the_spec(stack: Stack, spec: OpenAPISpec, tally: Tally, client: str, provider: str,
                                 scenario: str, stream: bool) -> None:
    ck = checker(spec, tally, client, provider)
    model = MODEL_FOR[provider]
    if scenario == "tools":
        first = call(stack, ck, client, body_for(client, model, "tools"), stream, "tool call")
        assert first.calls and first.calls[0][1] == "Bash", first
        assert "command" in json.loads(first.calls[0][2])
        second = call(stack, ck, client, body_for(client, model, "tool_result", first.calls[0]), stream,
                      "tool result")
        assert second.text and not second.calls
    elif scenario == "cached":
        key = f"conformance-{uuid.uuid4().hex}"
        call(stack, ck, client, body_for(client, model, "cached", prompt_cache_key=key), stream, "cache miss")
        hit = call(stack, ck, client, body_for(client, model, "cached", prompt_cache_key=key), stream, "cache hit")
        if provider in CACHING_PROVIDERS:
            assert hit.cached_tokens > 0, "a repeated prompt_cache_key reports no cached tokens"
    else:
        answer = call(stack, ck, client, body_for(client, model, scenario), stream, scenario)
        assert answer.status == 200 and answer.text
        if scenario == "truncated":  # cut at the limit: finish_reason length / status incomplete
            assert answer.incomplete, answer
        if scenario == "structured":
            value = json.loads(answer.text)
            assert set(value) == {"city", "population"} and isinstance(value["population"], int)
        # Thinking reaches a Chat client as reasoning_content; a Responses client gets reasoning items
        # only with a signature it can send back (a provider of its own dialect).
        if scenario == "reasoning" and provider in THINKING_PROVIDERS and client == "openai_chat":
            assert answer.reasoning, "the model's thinking did not reach the client"
        if client == "openai_responses" and scenario == "plain" and answer.response_id:
            # The stored response, as GET /v1/responses/{id} returns it.
            with httpx.Client(base_url=stack.url, timeout=30) as http:
                stored = http.get(f"/v1/responses/{answer.response_id}", headers={"authorization": "Bearer k"})
            assert stored.status_code == 200, stored.text
            ck.check("responses stored", "Response", stored.json())
    ck.assert_clean()


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", ALL_DIALECTS)
@pytest.mark.parametrize("client", CLIENTS)
def test_errors_follow_the_spec(stack: Stack, spec: OpenAPISpec, tally: Tally, client: str, provider: str,
                                stream: bool) -> None:
    ck = checker(spec, tally, client, provider)
    model = MODEL_FOR[provider]
    plain = body_for(client, model, "plain")
    bad = {**plain, "messages": "not a list"} if client == "openai_chat" else {**plain, "input": 42}
    assert call(stack, ck, client, bad, stream, "bad").status == 400
    assert call(stack, ck, client, {**plain, "model": "no-such-model"}, stream, "unknown").status == 404
    assert call(stack, ck, client, plain, stream, "upstream", {"x-sim-fault": "503"}).status == 503
    assert call(stack, ck, client, plain, stream, "upstream", {"x-sim-fault": "429:1"}).status == 429
    if stream:  # the upstream stream breaks after it started: an error inside the stream
        assert call(stack, ck, client, plain, stream, "cut", {"x-sim-fault": "disconnect:4"}).status == 502
    ck.assert_clean()


def test_unknown_stored_response_is_a_spec_error(stack: Stack, spec: OpenAPISpec, tally: Tally) -> None:
    ck = checker(spec, tally, "openai", "-")
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        resp = http.get("/v1/responses/resp_doesnotexist", headers={"authorization": "Bearer k"})
    assert resp.status_code == 404
    ck.check("error 404", "ErrorResponse", resp.json())
    ck.assert_clean()


def test_model_list_follows_the_spec(stack: Stack, spec: OpenAPISpec, tally: Tally) -> None:
    ck = checker(spec, tally, "openai", "-")
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        resp = http.get("/v1/models", headers={"authorization": "Bearer k"})
    assert resp.status_code == 200
    listing = resp.json()
    ck.check("model list", "ListModelsResponse", listing)
    assert {m["id"] for m in listing["data"]} >= set(MODEL_FOR.values())
    ck.assert_clean()


def test_the_validator_catches_what_the_spec_forbids(spec: OpenAPISpec) -> None:
    """The checks above can fail: payloads that break the spec are reported with their paths."""
    done = {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0,
            "arguments": "{}", "sequence_number": 3}
    assert spec.stream_event_errors(done)[1] == ["$: 'name' is a required property"]
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
             "input_tokens_details": {"cached_tokens": 0}}
    assert spec.errors("ResponseUsage", usage) == ["$.input_tokens_details: 'cache_write_tokens' is a required property"]
    assert spec.errors("ErrorResponse", {"error": {"message": "x", "type": "t", "param": None}}) == [
        "$.error: 'code' is a required property"]
    # OpenAPI 3.0 ``nullable``: null is accepted where the spec says so, and only there.
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    assert spec.errors("CreateChatCompletionStreamResponse", chunk) == []
    chunk["choices"][0]["finish_reason"] = "done"
    assert spec.errors("CreateChatCompletionStreamResponse", chunk) == [
        "$.choices[0].finish_reason: 'done' is not one of ['stop', 'length', 'tool_calls', 'content_filter', 'function_call']"]
    assert spec.stream_event_errors({"type": "response.no_such_event"})[1]
