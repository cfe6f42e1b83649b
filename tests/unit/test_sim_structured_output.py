"""The simulated provider answers structured-output requests with JSON of the schema, however the
dialect asks: Chat's response_format, Responses' text.format, Anthropic's output_config.format or a
system prompt asking for one JSON object (how the gateway carries JSON mode to Anthropic), Gemini's
responseJsonSchema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.providers.sim import wire_anthropic, wire_gemini, wire_openai_chat, wire_openai_responses
from streams.providers.sim.behaviour import Behaviour, SimRequest
from streams.providers.sim.config import SimConfig

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}, "why": {"type": "string"}},
          "required": ["score", "why"]}  # fmt: skip
ASK = [{"role": "user", "content": "classify this"}]


def requests() -> dict[str, SimRequest]:
    hint = "Respond with a single JSON object and nothing else. It must match this JSON schema: " + json.dumps(SCHEMA)
    return {
        "chat": wire_openai_chat.parse({"model": "m", "messages": ASK, "response_format": {
            "type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}}),
        "responses": wire_openai_responses.parse({"model": "m", "input": "classify this", "text": {
            "format": {"type": "json_schema", "name": "r", "schema": SCHEMA}}}),
        "anthropic": wire_anthropic.parse({"model": "m", "max_tokens": 99, "messages": ASK, "output_config": {
            "format": {"type": "json_schema", "schema": SCHEMA}}}),
        "anthropic-instructed": wire_anthropic.parse({"model": "m", "max_tokens": 99, "messages": ASK,
                                                      "system": [{"type": "text", "text": hint}]}),
        "gemini": wire_gemini.parse({"contents": [{"parts": [{"text": "classify this"}]}], "generationConfig": {
            "responseMimeType": "application/json", "responseJsonSchema": SCHEMA}}, "m", False),
    }  # fmt: skip


@pytest.mark.parametrize("how", list(requests()))
def test_the_answer_is_json_of_the_schema(how: str) -> None:
    req = requests()[how]
    plan = Behaviour(SimConfig()).plan(req)
    answer: Any = json.loads(plan.text_str)
    assert isinstance(answer, dict) and isinstance(answer["score"], int) and isinstance(answer["why"], str)


def test_plain_requests_get_prose() -> None:
    req = wire_openai_chat.parse({"model": "m", "messages": ASK, "response_format": {"type": "text"}})
    assert req.json_schema is None
    json_mode = wire_openai_chat.parse({"model": "m", "messages": ASK, "response_format": {"type": "json_object"}})
    assert isinstance(json.loads(Behaviour(SimConfig()).plan(json_mode).text_str), dict)
