"""Shared fuzzing material: JSON-like strategies, seed requests per dialect, and a mutator that keeps
inputs near-valid (one to three fields replaced, deleted or retyped), so the fuzzer reaches past the
first validation check. ``FUZZ_EXAMPLES`` sets the examples per test (CI default 300)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# CI runs the same inputs every time (a failure is reproducible, never flaky); a longer exploratory run
# (FUZZ_EXAMPLES set) draws fresh ones.
DERANDOMIZE = "FUZZ_EXAMPLES" not in os.environ

# Values a JSON decoder can produce (msgspec gives str keys, int/float/bool/None/str/list/dict).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "user", "assistant", "system", "developer", "tool", "text", "image", "image_url",
                       "tool_use", "tool_result", "function", "function_call", "function_call_output",
                       "input_text", "output_text", "message", "reasoning", "thinking", "auto", "none",
                       "required", "any", "json_schema", "data:image/png;base64,AAAA", "high", "low"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

_TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "openai_chat": [
        {"model": "M", "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": "M", "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2,
            "max_tokens": 50, "stop": ["\n"], "tool_choice": "auto", "parallel_tool_calls": True,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "description": "d", "parameters": _TOOL_SCHEMA}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _TOOL_SCHEMA}},
        },
    ],
    "openai_responses": [
        {"model": "M", "input": "hi"},
        {
            "model": "M", "stream": True, "store": False, "instructions": "be brief", "max_output_tokens": 64,
            "reasoning": {"effort": "low"}, "tool_choice": "auto", "parallel_tool_calls": False,
            "prompt_cache_key": "k",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run ls"},
                                                                 {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
                {"type": "reasoning", "id": "r1", "summary": [], "encrypted_content": "xx"},
                {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
            ],
            "tools": [{"type": "function", "name": "shell", "description": "d", "parameters": _TOOL_SCHEMA,
                       "strict": False}, {"type": "web_search"}],
            "text": {"format": {"type": "text"}},
        },
    ],
    "anthropic_messages": [
        {"model": "M", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
        {
            "model": "M", "max_tokens": 1024, "stream": True, "temperature": 1,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 512}, "metadata": {"user_id": "u"},
            "tool_choice": {"type": "auto"}, "stop_sequences": ["END"],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "read it"},
                                             {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                          "data": "AAAA"}}]},
                {"role": "system", "content": "inline system (Claude Code)"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "1\tx",
                                              "is_error": False}]},
            ],
            "tools": [{"name": "Read", "description": "d", "input_schema": _TOOL_SCHEMA}],
        },
    ],
    # A Gemini body names no model: the gateway puts the URL's model (and streaming) in before parsing.
    "gemini": [
        {"model": "M", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        {
            "model": "M", "stream": True, "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "weather?"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"text": "hmm", "thought": True},
                                            {"functionCall": {"name": "w", "args": {"city": "x"}}, "thoughtSignature": "s"}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"output": "sunny"}}}]},
            ],
            "tools": [{"functionDeclarations": [{"name": "w", "description": "d", "parametersJsonSchema": _TOOL_SCHEMA}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}},
            "generationConfig": {"maxOutputTokens": 50, "temperature": 0.2, "topP": 1, "stopSequences": ["\n"],
                                 "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"},
                                 "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
        },
    ],
}


# Small seeds, one feature each: with fewer fields each mutation lands on the feature more often.
_FOCUSED: dict[str, list[dict[str, Any]]] = {
    "openai_chat": [
        {"model": "M", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "w"}},
         "tools": [{"type": "function", "function": {"name": "w", "parameters": _TOOL_SCHEMA}}]},
        {"model": "M", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                                           "function": {"name": "w", "arguments": "{}"}}]},
                                    {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]}]},
        {"model": "M", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"},
         "reasoning_effort": "low", "n": 1, "seed": 3, "user": "u", "max_completion_tokens": 9},
    ],
    "openai_responses": [
        {"model": "M", "input": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "name": "f"},
         "tools": [{"type": "function", "name": "f", "parameters": _TOOL_SCHEMA}]},
        {"model": "M", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                                 {"type": "function_call_output", "call_id": "c", "output": "o"}]},
        {"model": "M", "input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": _TOOL_SCHEMA}},
         "reasoning": {"effort": "high", "summary": "auto"}, "temperature": 0.5, "top_p": 1},
    ],
    "anthropic_messages": [
        {"model": "M", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}],
         "tool_choice": {"type": "tool", "name": "Read"}, "tools": [{"name": "Read", "input_schema": _TOOL_SCHEMA}]},
        {"model": "M", "max_tokens": 8, "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                          "content": [{"type": "text", "text": "r"}]}]}]},
        {"model": "M", "max_tokens": 8, "system": "s", "messages": [{"role": "user", "content": "x"}],
         "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5, "stop_sequences": ["z"]},
    ],
}
for _d, _seeds in _FOCUSED.items():
    SEEDS[_d].extend(_seeds)

# Type confusions tried at every field by the deterministic sweep.
CONFUSIONS: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], [None], {}, {"type": None}, [[]], 2**70]


def sweep(seed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every single-field mutation of ``seed``: delete, wrap in a list, unwrap, or one of ``CONFUSIONS``."""
    for path in _paths(seed)[1:]:
        for op in ("delete", "wrap", "unwrap"):
            yield _apply(copy.deepcopy(seed), path, op, None)
        for value in CONFUSIONS:
            yield _apply(copy.deepcopy(seed), path, "replace", copy.deepcopy(value))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _apply(doc: Any, path: tuple[Any, ...], op: str, new: Any) -> Any:
    if not path:
        return new if op == "replace" else doc
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = new
    elif op == "wrap":  # same value, wrong container: "x" -> ["x"], {...} -> [{...}]
        parent[last] = [parent[last]]
    elif op == "unwrap" and isinstance(parent[last], list | dict) and parent[last]:
        inner = parent[last]
        parent[last] = inner[0] if isinstance(inner, list) else next(iter(inner.values()))
    return doc


@st.composite
def near_valid(draw: st.DrawFn, dialect: str, models: list[str] | None = None) -> dict[str, Any]:
    """A seed request of ``dialect`` with 0-3 mutations (mostly one)."""
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS[dialect])))
    if models:
        doc["model"] = draw(st.sampled_from(models))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        paths = _paths(doc)[1:]  # never replace the whole document here
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "wrap", "unwrap"]))
        doc = _apply(doc, path, op, draw(json_values) if op == "replace" else None)
    return doc


def arbitrary_request(dialect: str) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with the dialect's own field names holding arbitrary values, and fully arbitrary dicts."""
    keys = sorted({k for seed in SEEDS[dialect] for k in seed})
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=8) | st.dictionaries(
        st.text(max_size=10), json_values, max_size=5
    )
