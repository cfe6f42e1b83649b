"""What clients ask of the gateway beyond a completion: one model's metadata (``models.retrieve``),
Chat Completions' ``n``, forcing a model per request (``x-router-model``), and Claude Code's subagents.
Real SDKs where the client is an SDK; the default configuration with the real Router where routing
is what is asserted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from _gateway_harness import Stack, make_settings, running_stack, trace_for

from streams.config import load_settings
from streams.routing.router import Router

KEY = "wr-compat-dev-0000000000000000000000"
CHAT_ONLY = "wr-compat-chat-000000000000000000000"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
READ_TOOL = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as st:
        yield st


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = make_settings(
        data_dir=str(tmp_path_factory.mktemp("compat-keys")),
        reliability={"keys": {"require_key": True, "reload_interval_s": 0}},
        virtual_keys=[{"name": "dev", "key_sha256": sha(KEY)},
                      {"name": "chat-only", "key_sha256": sha(CHAT_ONLY), "models": ["m-chat", "router/auto"]}],
    )
    with running_stack(settings, router=Router) as st:
        yield st


@pytest.fixture(scope="module")
def default_stack() -> Iterator[Stack]:
    with running_stack(load_settings(env={}), router=Router) as st:
        yield st


# --- GET /v1/models/{id} -----------------------------------------------------------------------------


def test_openai_sdk_retrieves_a_model_and_an_auto_name(stack: Stack) -> None:
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    m = client.models.retrieve("m-chat")
    assert (m.id, m.object, m.owned_by) == ("m-chat", "model", "p-chat") and m.created > 0
    auto = client.models.retrieve("router/auto")  # sent as router%2Fauto
    assert (auto.id, auto.owned_by) == ("router/auto", "weave-router")
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    body: Any = err.value.body
    assert "no-such-model" in body["message"] and body["param"] == "model"


def test_anthropic_sdk_retrieves_a_model(stack: Stack) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=stack.url, max_retries=0)
    m = client.models.retrieve("m-anth")
    assert (m.id, m.type, m.display_name) == ("m-anth", "model", "m-anth")
    with pytest.raises(anthropic.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_name_the_router_decides_for_is_a_model(default_stack: Stack) -> None:
    # claude-opus-4-8 matches the default auto_models pattern claude-*: Claude Code may look it up.
    resp = httpx.get(default_stack.url + "/v1/models/claude-opus-4-8")
    assert resp.status_code == 200 and resp.json() == {
        "id": "claude-opus-4-8", "object": "model", "created": resp.json()["created"], "owned_by": "weave-router"}
    resp = httpx.get(default_stack.url + "/v1/models/claude-opus-4-8", headers=ANTHROPIC_HEADERS)
    assert resp.json()["type"] == "model" and resp.json()["id"] == "claude-opus-4-8"
    assert httpx.get(default_stack.url + "/v1/models/gpt-4o-mini").status_code == 404


def test_model_retrieve_respects_key_scopes(keyed: Stack) -> None:
    url = keyed.url + "/v1/models/m-chat"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url, headers={"authorization": f"Bearer {CHAT_ONLY}"}).status_code == 200
    # A key scoped to m-chat may not use m-anth: it is told so in the caller's shape.
    resp = httpx.get(keyed.url + "/v1/models/m-anth", headers={"authorization": f"Bearer {CHAT_ONLY}"})
    assert resp.status_code == 403 and "m-anth" in resp.json()["error"]["message"]
    resp = httpx.get(keyed.url + "/v1/models/m-anth", headers={"x-api-key": CHAT_ONLY, **ANTHROPIC_HEADERS})
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"


# --- Chat Completions' n -----------------------------------------------------------------------------


def test_n_above_one_is_refused_where_it_cannot_be_honoured(stack: Stack) -> None:
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    sent = len(stack.client.records)
    for model in ("router/auto", "m-anth", "m-resp"):  # routed, or a provider without n: one choice at most
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=model, n=2, messages=[{"role": "user", "content": "hi"}])
        body: Any = err.value.body
        assert body["param"] == "n" and "n=2" in body["message"] and body["type"] == "invalid_request_error"
    for bad in (0, "two", 1000, True):
        resp = httpx.post(stack.url + "/v1/chat/completions",
                          json={"model": "m-chat", "n": bad, "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "n", bad
    assert len(stack.client.records) == sent  # refused before any provider was called
    resp = httpx.post(stack.url + "/v1/route", json={"model": "router/auto", "n": 3,
                                                     "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "n"


def test_n_is_passed_on_to_a_named_chat_completions_model(stack: Stack) -> None:
    client = openai.OpenAI(api_key="k", base_url=stack.url + "/v1", max_retries=0)
    out = client.chat.completions.create(model="m-chat", n=2, messages=[{"role": "user", "content": "hi"}])
    assert out.choices and b'"n":2' in stack.last().body.replace(b" ", b"")
    one = client.chat.completions.create(model="router/auto", n=1, messages=[{"role": "user", "content": "hi"}])
    assert len(one.choices) == 1


# --- x-router-model: a model forced per request ------------------------------------------------------


def _decision(st: Stack, resp: httpx.Response) -> Any:
    return next(d for d, _ in st.events.decisions if d.decision_id == resp.headers["x-router-decision-id"])


def test_x_router_model_forces_the_model_of_a_routed_request(default_stack: Stack) -> None:
    st = default_stack
    body = {"model": "claude-opus-4-8", "max_tokens": 4096, "tools": [READ_TOOL],
            "messages": [{"role": "user", "content": "design the architecture of a new billing service"}]}
    headers = {**ANTHROPIC_HEADERS, "x-claude-code-session-id": "forced-1"}
    routed = httpx.post(st.url + "/v1/messages", json=body, headers=headers)
    assert routed.status_code == 200 and routed.headers["x-router-model"] != "deepseek-sim"
    forced = httpx.post(st.url + "/v1/messages", json=body, headers={**headers, "x-router-model": "deepseek-sim"})
    assert forced.status_code == 200 and forced.json()["type"] == "message"
    assert forced.headers["x-router-model"] == "deepseek-sim" and forced.headers["x-router-session"] == "forced-1"
    d = _decision(st, forced)
    assert (d.policy, d.route) == ("override", "override")
    assert d.reason.startswith("override: x-router-model header forces deepseek-sim")
    # Over Chat Completions, and decide-only, alike.
    chat = {"model": "router/auto", "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(st.url + "/v1/chat/completions", json=chat, headers={"x-router-model": "claude-haiku-sim"})
    assert resp.status_code == 200 and resp.headers["x-router-model"] == "claude-haiku-sim"
    route = httpx.post(st.url + "/v1/route", json=chat, headers={"x-router-model": "gpt-mini-sim"}).json()
    assert (route["model"], route["policy"]) == ("gpt-mini-sim", "override")


def test_x_router_model_naming_an_unknown_model_is_a_404_in_dialect(default_stack: Stack) -> None:
    st = default_stack
    sent = len(st.client.records)
    body = {"model": "router/auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(st.url + "/v1/messages", json=body, headers={**ANTHROPIC_HEADERS, "x-router-model": "nope-9"})
    assert resp.status_code == 404
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "not_found_error"
    assert "nope-9" in resp.json()["error"]["message"] and "x-router-model" in resp.json()["error"]["message"]
    client = openai.OpenAI(api_key="k", base_url=st.url + "/v1", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="router/auto", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-router-model": "nope-9"})
    assert "nope-9" in err.value.message
    resp = httpx.post(st.url + "/v1/route", json=body, headers={**ANTHROPIC_HEADERS, "x-router-model": "nope-9"})
    assert resp.status_code == 404
    assert len(st.client.records) == sent


def test_x_router_model_is_held_to_the_key_scope(keyed: Stack) -> None:
    chat = {"model": "router/auto", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(keyed.url + "/v1/chat/completions", json=chat,
                    headers={"authorization": f"Bearer {CHAT_ONLY}", "x-router-model": "m-chat"})
    assert ok.status_code == 200 and ok.headers["x-router-model"] == "m-chat"
    denied = httpx.post(keyed.url + "/v1/chat/completions", json=chat,
                        headers={"authorization": f"Bearer {CHAT_ONLY}", "x-router-model": "m-anth"})
    assert denied.status_code == 403 and "m-anth" in denied.json()["error"]["message"]
    body = {"model": "router/auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    denied = httpx.post(keyed.url + "/v1/messages", json=body,
                        headers={"x-api-key": CHAT_ONLY, "x-router-model": "m-anth", **ANTHROPIC_HEADERS})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"


# --- Claude Code's subagents ------------------------------------------------------------------------


def test_claude_code_subagent_is_routed_alone_and_traced_to_the_parent_session(default_stack: Stack) -> None:
    st = default_stack
    cc = {**ANTHROPIC_HEADERS, "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
          "x-claude-code-session-id": "cc-parent-1"}

    def turn(text: str, system: str, **extra: str) -> httpx.Response:
        body = {"model": "claude-opus-4-8", "max_tokens": 32000, "stream": True, "tools": [READ_TOOL],
                "system": [{"type": "text", "text": system}], "messages": [{"role": "user", "content": text}]}
        resp = httpx.post(st.url + "/v1/messages?beta=true", json=body, headers={**cc, **extra})
        assert resp.status_code == 200, resp.text[:300]
        return resp

    main_prompt = "You are Claude Code, Anthropic's official CLI for Claude."
    parent = turn("Plan the architecture for migrating billing to event sourcing; design the components", main_prompt)
    # The Task tool's subagent: its own system prompt and agent id, the parent's session header.
    child = turn("Find where the config loader is defined and which files import it.",
                 "You are a file search specialist for Claude Code, Anthropic's official CLI for Claude.",
                 **{"x-claude-code-agent-id": "a-explore-1", "x-claude-code-parent-agent-id": ""})
    tiers = {m.name: m.tier for m in st.gateway.settings.models}
    assert tiers[parent.headers["x-router-model"]] == "frontier"
    assert tiers[child.headers["x-router-model"]] == "cheap"
    assert child.headers["x-router-session"] == "cc-parent-1"
    trace = trace_for(st, child.headers["x-request-id"])
    assert trace["session_id"] == "cc-parent-1"
    d = _decision(st, child)
    assert d.session_id == "cc-parent-1" and d.features["subagent"] == "agent:a-explore-1"
    assert d.features["task"] == "search"
    # The parent's conversation stays on its model: the subagent neither stuck to it nor moved it.
    again = turn("Plan the architecture for migrating billing to event sourcing; design the components",
                 main_prompt)
    assert again.headers["x-router-model"] == parent.headers["x-router-model"]
