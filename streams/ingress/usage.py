"""Token usage from provider bytes without a full parse, for the same-dialect relay.

The relay forwards upstream bytes untouched; this module looks at them on the side and decodes only the
few events that carry usage or an error (typed msgspec structs ignore every other field), so the cost
per chunk is a substring test in the common case. Canonical ``Usage.input_tokens`` includes cached
tokens (Anthropic reports them apart; they are added back here).
"""

from __future__ import annotations

import msgspec

from streams.translation.canonical import Usage

# --- OpenAI Chat Completions ---------------------------------------------------------------------


class _Cached(msgspec.Struct):
    cached_tokens: int | None = 0


class _Reasoning(msgspec.Struct):
    reasoning_tokens: int | None = 0


class _ChatUsage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: _Cached | None = None
    completion_tokens_details: _Reasoning | None = None


class _ErrorBody(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _ChatBody(msgspec.Struct):
    usage: _ChatUsage | None = None
    choices: list[msgspec.Raw] | None = None
    error: _ErrorBody | None = None


# --- OpenAI Responses -----------------------------------------------------------------------------


class _RespUsage(msgspec.Struct):
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    input_tokens_details: _Cached | None = None
    output_tokens_details: _Reasoning | None = None


class _RespObject(msgspec.Struct):
    usage: _RespUsage | None = None
    status: str | None = None
    error: _ErrorBody | None = None


class _RespEvent(msgspec.Struct):
    type: str | None = None
    response: _RespObject | None = None
    usage: _RespUsage | None = None  # the non-streaming body has usage at top level
    error: _ErrorBody | None = None
    message: str | None = None  # the ``error`` stream event


# --- Anthropic Messages ---------------------------------------------------------------------------


class _AnthUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _AnthMessage(msgspec.Struct):
    usage: _AnthUsage | None = None


class _AnthEvent(msgspec.Struct):
    type: str | None = None
    message: _AnthMessage | None = None  # message_start
    usage: _AnthUsage | None = None  # message_delta, and the non-streaming body
    error: _ErrorBody | None = None


_CHAT = msgspec.json.Decoder(_ChatBody)
_RESP = msgspec.json.Decoder(_RespEvent)
_ANTH = msgspec.json.Decoder(_AnthEvent)


def _chat_usage(u: _ChatUsage, into: Usage) -> None:
    into.input_tokens = u.prompt_tokens or 0
    into.output_tokens = u.completion_tokens or 0
    into.cached_input_tokens = (u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details else 0
    if u.completion_tokens_details:
        into.reasoning_tokens = u.completion_tokens_details.reasoning_tokens or 0


def _resp_usage(u: _RespUsage, into: Usage) -> None:
    into.input_tokens = u.input_tokens or 0
    into.output_tokens = u.output_tokens or 0
    into.cached_input_tokens = (u.input_tokens_details.cached_tokens or 0) if u.input_tokens_details else 0
    if u.output_tokens_details:
        into.reasoning_tokens = u.output_tokens_details.reasoning_tokens or 0


def _anth_usage(u: _AnthUsage, into: Usage) -> None:
    # Cumulative counts; a later event may repeat or omit fields, so only overwrite what is present.
    if u.cache_read_input_tokens is not None:
        into.cached_input_tokens = u.cache_read_input_tokens
    if u.cache_creation_input_tokens is not None:
        into.cache_creation_input_tokens = u.cache_creation_input_tokens
    if u.input_tokens is not None:
        into.input_tokens = u.input_tokens + into.cached_input_tokens + into.cache_creation_input_tokens
    if u.output_tokens is not None:
        into.output_tokens = u.output_tokens


def usage_from_body(dialect: str, data: bytes) -> Usage:
    """Usage of a whole (non-streaming) response body; zeros when absent or unreadable."""
    return body_usage(dialect, data) or Usage()


def body_usage(dialect: str, data: bytes) -> Usage | None:
    """Usage of a whole response body (zeros when absent); None when the body is not JSON at all (cut
    short, garbage), which the relay must not pass on as a 200. The decode that finds the usage parses
    the whole body anyway, so the check costs nothing extra."""
    usage = Usage()
    try:
        if dialect == "openai_chat":
            chat = _CHAT.decode(data)
            if chat.usage:
                _chat_usage(chat.usage, usage)
        elif dialect == "openai_responses":
            resp = _RESP.decode(data)
            if resp.usage:
                _resp_usage(resp.usage, usage)
        else:
            anth = _ANTH.decode(data)
            if anth.usage:
                _anth_usage(anth.usage, usage)
    except msgspec.ValidationError:
        pass  # JSON with fields of unexpected types: relayed as it is, usage unknown
    except msgspec.DecodeError:
        return None
    return usage


def _malformed(block: bytes) -> bool:
    """Is this complete SSE event's data something other than one JSON object or ``[DONE]``? A shape
    test on the first and last byte, cheap enough for every event (those carrying usage or errors are
    fully decoded as well)."""
    if b"data:" not in block:
        return False  # a comment or a bare event line
    data = b"\n".join(line[5:] for line in block.split(b"\n") if line.startswith(b"data:")).strip()
    return not (data == b"[DONE]" or (data[:1] == b"{" and data[-1:] == b"}"))


def _interesting(data: bytes) -> bool:
    """Could ``data`` hold usage, an error or the end marker? (A false positive only costs a decode.)"""
    return b"usage" in data or b"error" in data or b"[DONE]" in data or b"message_stop" in data


class UsageScanner:
    """Watches a relayed SSE stream for usage and in-band errors.

    ``feed`` hands back whole events only (a client acts on an event at its blank line, so holding the
    start of one until its end arrives delays nothing) and stops at the first malformed event, which is
    not forwarded: ``malformed`` says what was wrong and the caller ends the stream with a clean error
    event instead of passing garbage on. ``rest()`` is whatever trails the last complete event.

    ``drop_usage_chunk`` (OpenAI Chat only): the client did not ask for ``include_usage`` but we asked
    upstream, so the extra usage-only chunk is cut out.
    """

    __slots__ = ("dialect", "usage", "error", "finished", "malformed", "_buf", "_drop")

    def __init__(self, dialect: str, *, drop_usage_chunk: bool = False) -> None:
        self.dialect = dialect
        self.usage = Usage()
        self.error: str | None = None
        self.finished = False  # saw the dialect's end-of-stream marker
        self.malformed: str | None = None  # the first event that is not well-formed JSON
        self._buf = b""
        self._drop = drop_usage_chunk and dialect == "openai_chat"

    def feed(self, chunk: bytes) -> bytes:
        """Scan ``chunk``; returns the complete, well-formed events to forward."""
        if self.malformed is not None:
            return b""
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = self._buf + chunk if self._buf else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buf = data
            return b""
        complete, self._buf = data[: end + 2], data[end + 2 :]
        blocks = complete.split(b"\n\n")
        if not self._drop and not _interesting(complete) and not any(_malformed(b) for b in blocks):
            return complete  # the common case: nothing to read, nothing to cut
        kept = []
        for block in blocks:
            if not block:
                continue
            verdict = _BAD if _malformed(block) else self._event(block)
            if verdict is _BAD:
                self.malformed = f"malformed upstream stream event: {block[:100].decode('utf-8', 'replace')!r}"
                self._buf = b""
                break
            if verdict is not _DROP:
                kept.append(block)
                kept.append(b"\n\n")
        return b"".join(kept)

    def rest(self) -> bytes:
        """Bytes after the last complete event (a final event without its blank line); clears them."""
        rest, self._buf = self._buf, b""
        return rest

    def _event(self, block: bytes) -> object:
        """Read one event: _KEEP, _DROP (the usage-only chunk to cut) or _BAD (its JSON does not parse)."""
        if not _interesting(block):
            return _KEEP
        data = b"\n".join(line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:"))
        if not data:
            return _KEEP
        if data == b"[DONE]":
            self.finished = True
            return _KEEP
        try:
            if self.dialect == "openai_chat":
                chat = _CHAT.decode(data)
                if chat.error:
                    self.error = chat.error.message or "upstream error"
                if chat.usage:
                    _chat_usage(chat.usage, self.usage)
                    return _DROP if self._drop and not chat.choices else _KEEP
            elif self.dialect == "openai_responses":
                ev = _RESP.decode(data)
                if ev.type in ("response.completed", "response.incomplete", "response.failed"):
                    self.finished = True
                if ev.response is not None:
                    if ev.response.usage:
                        _resp_usage(ev.response.usage, self.usage)
                    if ev.type == "response.failed" and ev.response.error:
                        self.error = ev.response.error.message or "upstream error"
                if ev.type == "error":
                    self.error = ev.message or (ev.error.message if ev.error else None) or "upstream error"
            else:
                anth = _ANTH.decode(data)
                if anth.type == "message_stop":
                    self.finished = True
                if anth.type == "message_start" and anth.message and anth.message.usage:
                    _anth_usage(anth.message.usage, self.usage)
                elif anth.usage:
                    _anth_usage(anth.usage, self.usage)
                if anth.type == "error":
                    self.error = (anth.error.message if anth.error else None) or "upstream error"
        except msgspec.ValidationError:
            pass  # JSON of an unexpected shape: relayed, nothing learnt from it
        except msgspec.DecodeError:
            return _BAD
        return _KEEP


_KEEP, _DROP, _BAD = object(), object(), object()
