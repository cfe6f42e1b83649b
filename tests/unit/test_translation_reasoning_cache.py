"""Request-side rules for signed reasoning and prompt caching across dialects: which model may get a
signature back, how effort maps between APIs, and each target's caching mechanism."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.config import ProviderSettings
from streams.translation import anthropic_messages as am
from streams.translation import openai_chat as oc
from streams.translation import openai_responses as rs
from streams.translation.common import open_signature, seal_signature, session_cache_key, signature_fits
from streams.translation.fastpath import rewrite_body


def test_a_sealed_signature_opens_to_the_providers_value_and_its_maker() -> None:
    sealed = seal_signature("EqQBCkgIARABGAIiQ.x/y+z==", "claude-opus-4-5", None)
    assert open_signature(sealed) == ("EqQBCkgIARABGAIiQ.x/y+z==", "claude-opus-4-5", None)
    assert open_signature("plain-signature") == ("plain-signature", None, None)
    assert open_signature("wr1.not-base64!.x")[1] is None  # garbage is not taken for a seal


@pytest.mark.parametrize(
    ("origin", "native", "target", "fits"),
    [
        ("claude-opus-4-5", False, "claude-opus-4-5-20251101", True),  # the API's dated snapshot name
        ("claude-opus-4-5", False, "claude-sonnet-4-5", False),
        (None, True, "anything", True),  # a client's own provider's block on its own dialect
        (None, False, "anything", False),
    ],
)
def test_signature_fits_only_its_maker(origin: str | None, native: bool, target: str, fits: bool) -> None:
    assert signature_fits(origin, native, target) is fits


def _anthropic_history(signature: str) -> dict[str, Any]:
    return {
        "model": "m", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": signature},
                                              {"type": "text", "text": "hello"}]},
            {"role": "user", "content": "go on"},
        ],
    }  # fmt: skip


def test_anthropic_fast_path_unseals_for_the_maker_and_drops_for_others() -> None:
    body = _anthropic_history(seal_signature("sig-A", "model-a"))
    raw = json.dumps(body).encode()
    to_a = json.loads(rewrite_body(raw, "anthropic_messages", "model-a", supports_thinking=True, ensure_usage=True))
    assert to_a["messages"][1]["content"][0]["signature"] == "sig-A"
    to_b = json.loads(rewrite_body(raw, "anthropic_messages", "model-b", supports_thinking=True, ensure_usage=True))
    assert [b["type"] for b in to_b["messages"][1]["content"]] == ["text"]
    # an unsealed block (this provider's own) is relayed as the client sent it
    own = json.dumps(_anthropic_history("sig-own")).encode()
    relayed = json.loads(rewrite_body(own, "anthropic_messages", "model-b", supports_thinking=True, ensure_usage=True))
    assert relayed["messages"] == json.loads(own)["messages"]


def test_anthropic_thinking_reaches_a_responses_model_only_when_it_made_it() -> None:
    req = am.parse_request(_anthropic_history(seal_signature("enc-1", "gpt-x", "rs_abc")))
    items = [i for i in rs.render_request(req, "gpt-x")["input"] if i.get("type") == "reasoning"]
    assert items == [{"type": "reasoning", "id": "rs_abc", "summary": [{"type": "summary_text", "text": "t"}],
                      "encrypted_content": "enc-1"}]  # fmt: skip
    assert not [i for i in rs.render_request(req, "gpt-y")["input"] if i.get("type") == "reasoning"]
    # and an Anthropic model of another name gets no thinking block from it
    blocks = am.render_request(req, "claude-x")["messages"][1]["content"]
    assert [b["type"] for b in blocks] == ["text"]


@pytest.mark.parametrize(("effort", "openai"), [("low", "low"), ("medium", "medium"), ("max", "xhigh")])
def test_anthropic_effort_as_openai_effort(effort: str, openai: str) -> None:
    req = am.parse_request({"model": "m", "max_tokens": 4096, "thinking": {"type": "adaptive"},
                            "output_config": {"effort": effort}, "messages": [{"role": "user", "content": "x"}]})
    assert rs.render_request(req, "gpt")["reasoning"]["effort"] == openai
    assert oc.render_request(req, "gpt")["reasoning_effort"] == openai
    assert "reasoning.encrypted_content" in rs.render_request(req, "gpt")["include"]


def test_openai_targets_get_the_clients_cache_key_or_the_sessions() -> None:
    req = rs.parse_request({"model": "m", "input": "x", "prompt_cache_key": "thread-1"})
    assert oc.render_request(req, "gpt")["prompt_cache_key"] == "thread-1"
    req = am.parse_request({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert "prompt_cache_key" not in rs.render_request(req, "gpt")
    req.cache_key = session_cache_key("session-42")
    assert rs.render_request(req, "gpt")["prompt_cache_key"] == session_cache_key("session-42")
    assert session_cache_key("session-42") != session_cache_key("session-43")
    assert "session-42" not in session_cache_key("session-42")


def test_anthropic_targets_get_breakpoints_but_never_on_thinking() -> None:
    req = rs.parse_request({
        "model": "m", "instructions": "sys",
        "tools": [{"type": "function", "name": "a", "parameters": {"type": "object"}},
                  {"type": "function", "name": "b", "parameters": {"type": "object"}}],
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}],
    })  # fmt: skip
    body = am.render_request(req, "claude")
    marked = [t.get("cache_control") for t in body["tools"]]
    assert marked == [None, {"type": "ephemeral"}]
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert json.dumps(body).count('"cache_control"') == 3  # the API allows 4


@pytest.mark.parametrize(
    ("dialect", "base_url", "setting", "takes"),
    [
        ("openai_chat", "https://api.openai.com/v1", None, True),
        ("openai_chat", "https://my-org.openai.azure.com/openai", None, True),
        ("openai_responses", "https://gateway.example/v1", None, True),
        ("openai_chat", "sim", None, True),
        # strict OpenAI-compatible servers refuse fields they do not know
        ("openai_chat", "https://api.mistral.ai/v1", None, False),
        ("openai_chat", "https://api.mistral.ai/v1", True, True),
        ("openai_chat", "https://api.openai.com/v1", False, False),
    ],
)
def test_which_providers_get_a_prompt_cache_key(dialect: str, base_url: str, setting: bool | None, takes: bool) -> None:
    provider = ProviderSettings(name="p", dialect=dialect, base_url=base_url, prompt_cache_key=setting)  # type: ignore[arg-type]
    assert provider.takes_prompt_cache_key() is takes


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def test_relayed_anthropic_stream_seals_only_the_signature() -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "claude-a", "usage": {"input_tokens": 9}}}
    block = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}  # fmt: skip
    think = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}
    sig = {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG"}}
    frames = [_frame("message_start", start), _frame("content_block_start", block),
              _frame("content_block_delta", think), _frame("content_block_delta", sig),
              _frame("message_stop", {"type": "message_stop"})]  # fmt: skip
    raw = b"".join(frames)
    scanner = am.usage_scanner()
    out = b"".join(scanner.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)) + scanner.rest()
    sealed = seal_signature("SIG", "claude-a")
    sig_out = _frame("content_block_delta", {**sig, "delta": {"type": "signature_delta", "signature": sealed}})
    # every other event byte for byte as the provider wrote it
    assert out.replace(b" ", b"") == b"".join([*frames[:3], sig_out, frames[4]]).replace(b" ", b"")
    assert out.startswith(b"".join(frames[:3]))
    assert scanner.usage.input_tokens == 9 and scanner.finished
