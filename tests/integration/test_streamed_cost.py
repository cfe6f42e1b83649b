"""A streamed answer's cost, told at its end (``usage.cost_usd`` in the final usage event and a closing
``: x-router-cost-usd:`` comment, on OpenAI Chat, Responses and Anthropic streams; Gemini streams stay
plain ``data:`` lines), and ``GET /v1/requests/{id}``: the trace of a recent request, whole or
streamed, readable only by the key that made it or an analytics key."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import (
    ALL_DIALECTS,
    DIALECTS,
    MODEL_FOR,
    Stack,
    make_settings,
    running_stack,
    sse_frames,
    trace_for,
)

from tests.conftest import shared_dir

PATH = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses", "anthropic_messages": "/v1/messages"}
COMMENT = re.compile(rb"^: x-router-cost-usd: (\d+\.\d{8})$", re.M)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


def post(st: Stack, dialect: str, model: str, *, stream: bool, headers: dict[str, str] | None = None,
         **extra: Any) -> httpx.Response:
    """One request in ``dialect`` (Gemini names the model and streaming in the URL)."""
    if dialect == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}], **extra}
        return httpx.post(f"{st.url}/v1beta/models/{model}:{method}", json=body, headers=headers, timeout=30)
    if dialect == "openai_chat":
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    elif dialect == "openai_responses":
        body = {"model": model, "input": "hello", **extra}
    else:
        body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}], **extra}
    if stream:
        body["stream"] = True
    return httpx.post(st.url + PATH[dialect], json=body, headers=headers, timeout=30)


def comment_cost(raw: bytes) -> float:
    """The cost the closing SSE comment tells: exactly one, and nothing but blank lines after it."""
    found = COMMENT.findall(raw)
    assert len(found) == 1, raw[-300:]
    assert raw.rstrip().endswith(b": x-router-cost-usd: " + found[0])
    return float(found[0])


def field_costs(dialect: str, raw: bytes) -> list[float]:
    """Every ``usage.cost_usd`` the stream's events carry, read as a client would find it."""
    out: list[float] = []
    for _, data in sse_frames(raw):
        if data == "[DONE]":
            continue
        obj = json.loads(data)
        usage = (obj.get("response") or {}).get("usage") if dialect == "openai_responses" else obj.get("usage")
        if isinstance(usage, dict) and "cost_usd" in usage:
            out.append(usage["cost_usd"])
    return out


def priced(st: Stack, model: str, trace: dict[str, Any]) -> float:
    m = st.gateway.settings.model(model)
    assert m is not None
    return m.cost_usd(trace["input_tokens"], trace["output_tokens"], trace["cached_tokens"])


# --- the cost at the end of a stream ----------------------------------------------------------------


@pytest.mark.parametrize("client_dialect", ALL_DIALECTS)
def test_streamed_cost_equals_the_whole_answers_and_the_trace(stack: Stack, client_dialect: str) -> None:
    # Gemini's simulated provider counts prompt tokens from the contents alone, so the same request
    # costs the same whether it streams or not (the others count the wire body, which "stream" changes).
    extra = {"stream_options": {"include_usage": True}} if client_dialect == "openai_chat" else {}
    whole = post(stack, client_dialect, "m-gem", stream=False)
    streamed = post(stack, client_dialect, "m-gem", stream=True, **extra)
    assert whole.status_code == streamed.status_code == 200
    whole_cost = float(whole.headers["x-router-cost-usd"])
    assert whole_cost > 0

    # Headers known before the first byte are on the stream too.
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["x-router-model"] == "m-gem" and streamed.headers["x-router-decision-id"]
    assert "x-router-cost-usd" not in streamed.headers  # not known then
    trace = trace_for(stack, streamed.headers["x-request-id"])
    assert trace["stream"] is True and trace["cost_usd"] == pytest.approx(priced(stack, "m-gem", trace))

    looked_up = httpx.get(f"{stack.url}/v1/requests/{streamed.headers['x-request-id']}").json()["cost_usd"]
    assert looked_up == trace["cost_usd"] == pytest.approx(whole_cost, abs=1e-8)
    if client_dialect == "gemini":
        # Google's stream readers take every non-empty line for "data: <json>": nothing else in the stream.
        assert all(line.startswith(b"data: {") for line in streamed.content.split(b"\n") if line)
        assert not COMMENT.search(streamed.content) and field_costs(client_dialect, streamed.content) == []
        return
    assert comment_cost(streamed.content) == pytest.approx(whole_cost, abs=1e-8)
    assert comment_cost(streamed.content) == pytest.approx(trace["cost_usd"], abs=1e-8)
    assert field_costs(client_dialect, streamed.content) == [trace["cost_usd"]]  # once, exactly the trace's


@pytest.mark.parametrize("client_dialect", DIALECTS)
def test_relayed_stream_carries_the_cost_of_its_usage(stack: Stack, client_dialect: str) -> None:
    """Same dialect: the provider's bytes pass through, and only its final usage event is rewritten."""
    extra = {"stream_options": {"include_usage": True}} if client_dialect == "openai_chat" else {}
    model = MODEL_FOR[client_dialect]
    resp = post(stack, client_dialect, model, stream=True, **extra)
    assert resp.status_code == 200
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert trace["provider_dialect"] == client_dialect and trace["output_tokens"] > 0
    assert field_costs(client_dialect, resp.content) == [trace["cost_usd"]]
    assert trace["cost_usd"] == pytest.approx(priced(stack, model, trace))
    assert comment_cost(resp.content) == pytest.approx(trace["cost_usd"], abs=1e-8)
    # Every other event is the provider's, byte for byte.
    provider = [d for _, d in sse_frames(bytes(stack.last().response))]
    client = [d for _, d in sse_frames(resp.content)]
    assert len(provider) == len(client)
    assert sum(p != c for p, c in zip(provider, client, strict=True)) == 1


@pytest.mark.parametrize("provider_dialect", DIALECTS)
def test_chat_stream_without_include_usage_has_the_comment_only(stack: Stack, provider_dialect: str) -> None:
    resp = post(stack, "openai_chat", MODEL_FOR[provider_dialect], stream=True)
    assert field_costs("openai_chat", resp.content) == []
    assert not any("usage" in json.loads(d) and json.loads(d)["usage"] for _, d in sse_frames(resp.content)
                   if d != "[DONE]")
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert trace["cost_usd"] > 0 and comment_cost(resp.content) == pytest.approx(trace["cost_usd"], abs=1e-8)


@pytest.mark.parametrize("provider_dialect", DIALECTS)
def test_broken_stream_still_ends_with_what_it_cost(stack: Stack, provider_dialect: str) -> None:
    resp = post(stack, "anthropic_messages", MODEL_FOR[provider_dialect], stream=True,
                headers={"x-sim-fault": "disconnect:4"})
    frames = sse_frames(resp.content)
    assert frames[-1][0] == "error"  # the error event stays the last event; the comment follows it
    trace = trace_for(stack, resp.headers["x-request-id"])
    assert trace["status"] == 502
    assert comment_cost(resp.content) == pytest.approx(trace["cost_usd"], abs=1e-8)


def _schemas_along(spec: dict[str, Any], schema: dict[str, Any], path: list[str]) -> list[dict[str, Any]]:
    """Every schema object a value at ``path`` (property names) must satisfy, through $ref / allOf /
    anyOf / oneOf, the path's own schemas included."""
    if "$ref" in schema:
        return _schemas_along(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], path)
    out = [schema]
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            out += _schemas_along(spec, sub, path)
    if path and path[0] in schema.get("properties", {}):
        out += _schemas_along(spec, schema["properties"][path[0]], path[1:])
    return out


@pytest.mark.parametrize(("event_schema", "path"), [
    ("CreateChatCompletionStreamResponse", ["usage"]),
    ("ResponseCompletedEvent", ["response", "usage"]),
    ("ResponseIncompleteEvent", ["response", "usage"]),
    ("ResponseFailedEvent", ["response", "usage"]),
])
def test_the_official_schema_leaves_room_for_cost_usd(event_schema: str, path: list[str]) -> None:
    """The objects ``cost_usd`` is added to allow extra properties and do not define the name already."""
    spec = json.loads((shared_dir() / "reference" / "openai-openapi.json").read_text())
    along = _schemas_along(spec, spec["components"]["schemas"][event_schema], path)
    usage = [s for s in along if "input_tokens" in s.get("properties", {}) or "prompt_tokens" in s.get("properties", {})]
    assert usage, "the usage schema was not reached"
    assert not [s for s in along if s.get("additionalProperties") is False]
    assert not [s for s in usage if "cost_usd" in s.get("properties", {})]


# --- the official SDKs read streams with the cost in them ------------------------------------------


@pytest.mark.parametrize("model", ["m-chat", "m-anth"])
def test_openai_sdk_chat_stream_exposes_the_cost(stack: Stack, model: str) -> None:
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0
    trace = trace_for(stack, raw.headers["x-request-id"])
    assert last.usage.cost_usd == trace["cost_usd"]  # type: ignore[attr-defined]  # an extra field, kept
    # The accumulating helper parses it as well.
    with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "hello"}],
                                        stream_options={"include_usage": True}) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content and final.usage is not None
    assert final.usage.model_extra and final.usage.model_extra["cost_usd"] > 0


@pytest.mark.parametrize("model", ["m-resp", "m-anth"])
def test_openai_sdk_responses_stream_exposes_the_cost(stack: Stack, model: str) -> None:
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    raw = client.responses.with_raw_response.create(model=model, input="hello", stream=True)
    events = list(raw.parse())
    done = [e for e in events if e.type == "response.completed"]
    assert len(done) == 1 and done[0].response.usage is not None
    trace = trace_for(stack, raw.headers["x-request-id"])
    assert done[0].response.usage.cost_usd == trace["cost_usd"]  # type: ignore[attr-defined]
    with client.responses.stream(model=model, input="hello") as s:
        final = s.get_final_response()
    assert final.output_text and final.usage is not None and final.usage.model_extra
    assert final.usage.model_extra["cost_usd"] > 0


@pytest.mark.parametrize("model", ["m-anth", "m-chat"])
def test_anthropic_sdk_stream_exposes_the_cost(stack: Stack, model: str) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=stack.url, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "hello"}], stream=True)
    events = list(raw.parse())
    deltas = [e for e in events if e.type == "message_delta"]
    assert len(deltas) == 1 and events[-1].type == "message_stop"
    trace = trace_for(stack, raw.headers["x-request-id"])
    assert deltas[0].usage.cost_usd == trace["cost_usd"]  # type: ignore[attr-defined]
    with client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello"}]) as s:
        final = s.get_final_message()
    assert final.content and final.usage.output_tokens > 0


# --- GET /v1/requests/{id} ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client_dialect", ALL_DIALECTS)
def test_request_lookup_right_after_the_answer(stack: Stack, client_dialect: str, stream: bool) -> None:
    headers = {"x-test-route": "m-chat", "x-router-session": "sess-lookup"}
    resp = post(stack, client_dialect, "router/auto", stream=stream, headers=headers)
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    # No waiting: the entry is there once the answer's last byte is (a stream's once it has ended).
    got = httpx.get(f"{stack.url}/v1/requests/{rid}")
    assert got.status_code == 200, got.text
    doc = got.json()
    trace = trace_for(stack, rid)
    assert doc["id"] == rid and doc["object"] == "router.request"
    assert (doc["model"], doc["provider"], doc["status"], doc["stream"]) == ("m-chat", "p-chat", 200, stream)
    assert doc["cost_usd"] == trace["cost_usd"] > 0
    assert doc["usage"] == {"input_tokens": trace["input_tokens"], "output_tokens": trace["output_tokens"],
                            "cached_tokens": trace["cached_tokens"]}
    assert doc["decision"] == {"id": resp.headers["x-router-decision-id"], "reason": "test route",
                               "policy": "test", "policy_version": 7, "route": "test"}
    assert doc["session_id"] == "sess-lookup" and doc["client_dialect"] == client_dialect
    assert doc["latency_ms"] > 0 and doc["ttft_ms"] <= doc["latency_ms"]
    if not stream:
        assert float(resp.headers["x-router-cost-usd"]) == pytest.approx(doc["cost_usd"], abs=1e-8)
    elif client_dialect != "gemini":
        assert comment_cost(resp.content) == pytest.approx(doc["cost_usd"], abs=1e-8)


def test_request_lookup_of_an_upstream_failure(stack: Stack) -> None:
    resp = post(stack, "openai_chat", "m-chat", stream=False, headers={"x-sim-fault": "503"})
    assert resp.status_code == 503
    doc = httpx.get(f"{stack.url}/v1/requests/{resp.headers['x-request-id']}").json()
    assert doc["status"] == 503 and doc["error"] and doc["cost_usd"] == 0


def test_unknown_request_is_404_in_our_error_shape(stack: Stack) -> None:
    for rid in ("0" * 32, "no-such-request"):
        got = httpx.get(f"{stack.url}/v1/requests/{rid}")
        assert got.status_code == 404 and got.headers["content-type"].startswith("application/json")
        err = got.json()["error"]
        assert err["param"] == "request_id" and rid in err["message"] and err["type"]
    # The SDK sees it as a NotFoundError, like any API 404.
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.get("/requests/" + "0" * 32, cast_to=object)


def test_expired_and_evicted_requests_are_404(stack: Stack) -> None:
    recent = stack.gateway.recent
    first = post(stack, "openai_chat", "m-chat", stream=False).headers["x-request-id"]
    assert httpx.get(f"{stack.url}/v1/requests/{first}").status_code == 200
    saved = recent.max_entries
    try:
        recent.max_entries = 1
        second = post(stack, "openai_chat", "m-chat", stream=False).headers["x-request-id"]
        assert httpx.get(f"{stack.url}/v1/requests/{first}").status_code == 404  # evicted by the newer one
        assert httpx.get(f"{stack.url}/v1/requests/{second}").status_code == 200
    finally:
        recent.max_entries = saved
    saved_age = recent.max_age_s
    try:
        recent.max_age_s = 0.0
        assert httpx.get(f"{stack.url}/v1/requests/{second}").status_code == 404  # older than the age bound
    finally:
        recent.max_age_s = saved_age


# --- who may read a request ---------------------------------------------------------------------------

KEY_A = "wr-lookup-a-0123456789abcdefghijklmnop"
KEY_B = "wr-lookup-b-0123456789abcdefghijklmnop"
KEY_ANALYTICS = "wr-lookup-analytics-0123456789abcdefgh"
KEY_FEEDBACK = "wr-lookup-feedback-0123456789abcdefghi"
KEY_REVOKED = "wr-lookup-revoked-0123456789abcdefghij"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("lookup-keys")
    settings = make_settings(
        data_dir=str(data_dir),
        reliability={"keys": {"require_key": True, "reload_interval_s": 0}},
        virtual_keys=[
            {"name": "a", "key_sha256": _sha(KEY_A)},
            {"name": "b", "key_sha256": _sha(KEY_B)},
            {"name": "dash", "key_sha256": _sha(KEY_ANALYTICS), "scopes": ["analytics"]},
            {"name": "ci", "key_sha256": _sha(KEY_FEEDBACK), "scopes": ["feedback"]},
            {"name": "old", "key_sha256": _sha(KEY_REVOKED), "disabled": True},
        ],
    )
    with running_stack(settings) as st:
        yield st


def _lookup(st: Stack, rid: str, key: str | None, header: str = "authorization") -> httpx.Response:
    headers = {} if key is None else {header: f"Bearer {key}" if header == "authorization" else key}
    return httpx.get(f"{st.url}/v1/requests/{rid}", headers=headers)


@pytest.mark.parametrize("stream", [False, True])
def test_only_the_requesting_key_or_an_analytics_key_reads_a_request(keyed: Stack, stream: bool) -> None:
    resp = post(keyed, "anthropic_messages", "m-anth", stream=stream, headers={"x-api-key": KEY_A})
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    mine = _lookup(keyed, rid, KEY_A, header="x-api-key")
    assert mine.status_code == 200 and mine.json()["key_id"] == "cfg:a"
    assert KEY_A not in mine.text  # the key itself is never in the answer
    assert _lookup(keyed, rid, KEY_ANALYTICS).status_code == 200

    # Another key: the same 404 as an id that never existed, so existence is not revealed.
    other = _lookup(keyed, rid, KEY_B)
    unknown = _lookup(keyed, "f" * 32, KEY_B)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"]["message"].replace(rid, "ID") == unknown.json()["error"]["message"].replace(
        "f" * 32, "ID")

    assert _lookup(keyed, rid, None).status_code == 401
    assert _lookup(keyed, rid, "wr-not-a-key-000000000000000000000").status_code == 401
    assert _lookup(keyed, rid, KEY_REVOKED).status_code == 401
    assert _lookup(keyed, rid, KEY_FEEDBACK).status_code == 403  # a key for neither models nor analytics


def test_gemini_request_is_read_back_with_its_gemini_key(keyed: Stack) -> None:
    resp = post(keyed, "gemini", "m-gem", stream=True, headers={"x-goog-api-key": KEY_B})
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    doc = _lookup(keyed, rid, KEY_B, header="x-goog-api-key").json()
    assert doc["cost_usd"] == trace_for(keyed, rid)["cost_usd"] > 0 and doc["key_id"] == "cfg:b"
    assert _lookup(keyed, rid, KEY_A).status_code == 404
