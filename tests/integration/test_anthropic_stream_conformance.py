"""The gateway's Anthropic Messages streams, from every provider dialect, as the official ``anthropic``
SDK consumes them: ``client.messages.stream(...)`` accumulates them without error, the events come in
the order the SDK's accumulator relies on (message_start; per block content_block_start, its deltas,
content_block_stop, blocks one after another; message_delta; message_stop), and the accumulated
message says what the non-streamed answer to the same request says. ``message_start`` reports the
input tokens, as Anthropic's own API does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from _gateway_harness import ALL_DIALECTS, MODEL_FOR, Stack, make_settings, provider_facts, running_stack

TOOL = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
# Thinking reaches an Anthropic client only with a signature it can send back: from Anthropic models.
THINKING_PROVIDERS = ("anthropic_messages",)
# Providers whose streams report the prompt's token count in their first event.
COUNT_AT_START = ("anthropic_messages", "gemini")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    settings = make_settings()
    for model in settings.models:
        model.capabilities.thinking = True
    with running_stack(settings) as st:
        yield st


@pytest.fixture(scope="module")
def client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="client-key", base_url=stack.url, max_retries=0)


def request(provider: str, scenario: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"model": MODEL_FOR[provider], "max_tokens": 2048,
                          "messages": [{"role": "user", "content": "Say hello"}]}
    if scenario == "tools":
        kw["messages"][0]["content"] = "List the python files in the repository"
        kw["tools"] = [TOOL]
    elif scenario == "thinking":
        kw["messages"][0]["content"] = "Why is the sky blue?"
        kw["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    return kw


def order_problems(events: list[Any]) -> list[str]:
    """Where the event sequence leaves the one the SDK's accumulator expects."""
    problems: list[str] = []
    kinds = [e.type for e in events if e.type != "ping"]
    if not kinds or kinds[0] != "message_start":
        problems.append(f"first event is {kinds[:1]}, not message_start")
    if kinds[-2:] != ["message_delta", "message_stop"]:
        problems.append(f"last events are {kinds[-2:]}, not message_delta, message_stop")
    open_index: int | None = None
    next_index = 0
    for i, e in enumerate(events):
        if e.type == "content_block_start":
            if open_index is not None:
                problems.append(f"event {i}: block {e.index} starts while block {open_index} is open")
            if e.index != next_index:
                problems.append(f"event {i}: block {e.index} starts, block {next_index} was next")
            open_index, next_index = e.index, e.index + 1
        elif e.type == "content_block_delta" and e.index != open_index:
            problems.append(f"event {i}: delta of block {e.index} while block {open_index} is open")
        elif e.type == "content_block_stop":
            if e.index != open_index:
                problems.append(f"event {i}: stop of block {e.index} while block {open_index} is open")
            open_index = None
        elif e.type in ("message_delta", "message_stop") and open_index is not None:
            problems.append(f"event {i}: {e.type} while block {open_index} is open")
    return problems


def facts(message: Any) -> dict[str, Any]:
    """What a user reads off a message (ids and signatures differ between two calls)."""
    blocks = []
    for b in message.content:
        if b.type == "text":
            blocks.append(("text", b.text))
        elif b.type == "tool_use":
            blocks.append(("tool_use", b.name, b.input))
        elif b.type == "thinking":
            blocks.append(("thinking", b.thinking))
        else:
            blocks.append((b.type,))
    u = message.usage
    return {"content": blocks, "stop_reason": message.stop_reason, "output_tokens": u.output_tokens}


def input_tokens(usage: Any) -> int:
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


@pytest.mark.parametrize("scenario", ["plain", "tools", "thinking"])
@pytest.mark.parametrize("provider", ALL_DIALECTS)
def test_sdk_accumulates_the_stream_into_the_whole_answer(stack: Stack, client: anthropic.Anthropic, provider: str,
                                                          scenario: str) -> None:
    kw = request(provider, scenario)
    with client.messages.stream(**kw) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert not order_problems(events), order_problems(events)
    # The prompt's size is the provider's count for this streamed request (a streamed body is a few
    # bytes longer, so the whole answer's count may differ).
    upstream_input = provider_facts(stack.last(), True).input_tokens
    assert input_tokens(final.usage) == upstream_input
    whole = client.messages.create(**kw)
    assert facts(final) == facts(whole)

    kinds = [b[0] for b in facts(final)["content"]]
    if scenario == "tools":
        assert final.stop_reason == "tool_use" and kinds[-1] == "tool_use"
    else:
        assert final.stop_reason == "end_turn" and kinds[-1] == "text"
    if scenario == "thinking" and provider in THINKING_PROVIDERS:
        assert kinds[0] == "thinking"

    # message_start reports the prompt's size at once, as Anthropic's API does (clients show it
    # before the answer ends): the provider's count where its stream starts with one, else an
    # estimate (of the client's body: the provider counts its own) that message_delta's count replaces.
    at_start = input_tokens(events[0].message.usage)
    if provider in COUNT_AT_START:
        assert at_start == upstream_input
    else:
        assert at_start > 0
