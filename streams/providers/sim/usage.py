"""Token accounting: input size estimate and prompt-cache hits.

Input tokens are estimated from the request body size (~4 bytes per token), which costs nothing per
request. Prompt caching follows each provider's observable behaviour:

- Anthropic: prefixes ending at a ``cache_control`` breakpoint (order tools -> system -> messages) are
  written to the cache the first time (``cache_creation_input_tokens``) and read afterwards
  (``cache_read_input_tokens``); a request reads the longest breakpoint prefix seen before.
- OpenAI: caching is automatic for prompts of 1,024 tokens or more: a request whose first 1,024 tokens
  were seen before (or that repeats a ``prompt_cache_key``, which the API uses to route requests with a
  shared prefix together) reports the shared prefix of the previous such request as ``cached_tokens``
  (rounded down to 128-token blocks, as the API does).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

_CACHE_ENTRIES = 10_000
_OPENAI_MIN_PREFIX_TOKENS = 1024  # OpenAI caches prompts of at least this many tokens
_encode = msgspec.json.Encoder().encode


def estimate_tokens(nbytes: int) -> int:
    return max(1, nbytes // 4)


@dataclass(slots=True)
class Usage:
    input_tokens: int  # all input tokens, cached ones included
    output_tokens: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0  # output tokens spent on reasoning


class _Lru:
    def __init__(self, limit: int) -> None:
        self._data: OrderedDict[bytes | str, int] = OrderedDict()
        self._limit = limit

    def get(self, key: bytes | str) -> int | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: bytes | str, value: int) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._limit:
            self._data.popitem(last=False)


class PromptCache:
    """Per-simulator prompt cache state (bounded: steady memory under load tests)."""

    def __init__(self) -> None:
        self._anthropic = _Lru(_CACHE_ENTRIES)
        self._openai = _Lru(_CACHE_ENTRIES)

    def anthropic(self, model: str, body: dict[str, Any], input_tokens: int) -> tuple[int, int]:
        """(cache_read, cache_write) tokens of an Anthropic request with ``cache_control`` blocks."""
        boundaries = _anthropic_prefixes(model, body)
        breakpoints = [(d, t) for d, t, is_bp in boundaries if is_bp]
        if not breakpoints:
            return 0, 0
        last = min(breakpoints[-1][1], input_tokens)
        read = 0
        # The longest earlier-written prefix this request starts with, up to its last breakpoint
        # (the API looks back from each breakpoint for a previous write).
        for digest, tokens, _ in reversed(boundaries):
            if tokens <= last and self._anthropic.get(digest) is not None:
                read = tokens
                break
        for digest, tokens in breakpoints:
            self._anthropic.put(digest, tokens)
        return read, last - read

    def openai(self, model: str, cache_key: str | None, input_tokens: int, raw: bytes = b"") -> int:
        """Cached tokens of an OpenAI request: by its ``prompt_cache_key``, else by its first 1,024
        tokens (``raw``, the body as sent), as the API caches without being asked."""
        if cache_key:
            key: bytes | str = f"{model}\x00{cache_key}"
        elif input_tokens >= _OPENAI_MIN_PREFIX_TOKENS and raw:
            key = hashlib.blake2b(model.encode() + b"\x00" + raw[:_OPENAI_MIN_PREFIX_TOKENS * 4],
                                  digest_size=16).digest()
        else:
            return 0
        previous = self._openai.get(key)
        self._openai.put(key, input_tokens)
        if previous is None:
            return 0
        return (min(previous, input_tokens) // 128) * 128


def _anthropic_prefixes(model: str, body: dict[str, Any]) -> list[tuple[bytes, int, bool]]:
    """(prefix digest, prefix tokens, is a cache_control breakpoint) at every block, in cache order."""
    h = hashlib.blake2b(model.encode(), digest_size=16)
    size = 0
    out: list[tuple[bytes, int, bool]] = []

    def feed(block: Any) -> None:
        nonlocal size
        marked = isinstance(block, dict) and bool(block.get("cache_control"))
        if marked:
            # The marker is not content: moving it must not change the prefix.
            block = {k: v for k, v in block.items() if k != "cache_control"}
        data = block.encode() if isinstance(block, str) else _encode(block)
        h.update(data)
        size += len(data)
        out.append((h.copy().digest(), estimate_tokens(size), marked))

    for tool in body.get("tools") or []:
        feed(tool)
    system = body.get("system")
    if isinstance(system, str):
        feed(system)
    elif isinstance(system, list):
        for block in system:
            feed(block)
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        feed(str(message.get("role")))
        if isinstance(content, list):
            for block in content:
                feed(block)
        else:
            feed(str(content))
    return out
