"""Usage and in-band errors read off a relayed SSE stream, without a full parse.

The same-dialect relay forwards upstream bytes untouched; a ``UsageScanner`` looks at them on the side.
It splits the bytes into whole events, passes most of them on after a substring test, and hands the
few that may carry usage, an error or the end to its dialect's ``EventReader`` (each dialect's
``usage.py`` has one). Canonical ``Usage.input_tokens`` includes cached tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from streams.translation.canonical import Usage

# Reads one event's JSON data into the scanner (usage, error, finished); True means "cut this event
# out". May raise msgspec.DecodeError (the event is malformed) or ValidationError (unexpected shape).
EventReader = Callable[[bytes, "UsageScanner"], bool]
Body = TypeVar("Body")


def body_usage_with(
    decoder: msgspec.json.Decoder[Body], usage_of: Callable[[Body], Usage], data: bytes
) -> Usage | None:
    """Usage of a whole relayed body (zeros when absent); None when the body is not JSON at all (cut
    short, garbage), which the relay must not pass on as a 200. The decode that finds the usage
    parses the whole body anyway, so the check costs nothing extra."""
    try:
        body = decoder.decode(data)
    except msgspec.ValidationError:
        return Usage()  # JSON with fields of unexpected types: relayed as it is, usage unknown
    except msgspec.DecodeError:
        return None
    return usage_of(body)


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

    ``drop_usage_chunk`` (read by the OpenAI Chat reader): the client did not ask for
    ``include_usage`` but we asked upstream, so the extra usage-only chunk is cut out.
    """

    __slots__ = ("usage", "error", "finished", "malformed", "drop_usage_chunk", "origin", "replacement", "_read",
                 "_buf", "_markers")

    def __init__(
        self, read_event: EventReader, *, drop_usage_chunk: bool = False, markers: tuple[bytes, ...] = ()
    ) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.finished = False  # saw the dialect's end-of-stream marker
        self.malformed: str | None = None  # the first event that is not well-formed JSON
        self.drop_usage_chunk = drop_usage_chunk
        self.origin = ""  # the model the upstream says answered, when the reader saw it
        # Set by the reader: the data this event is relayed with instead (signed reasoning, sealed).
        self.replacement: bytes | None = None
        self._read = read_event
        self._buf = b""
        self._markers = markers  # more substrings that make an event worth reading

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
        if (
            not self.drop_usage_chunk
            and not self._interesting(complete)
            and not any(_malformed(b) for b in blocks)
        ):
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
                if self.replacement is not None:
                    block, self.replacement = _with_data(block, self.replacement), None
                kept.append(block)
                kept.append(b"\n\n")
        return b"".join(kept)

    def rest(self) -> bytes:
        """Bytes after the last complete event (a final event without its blank line); clears them."""
        rest, self._buf = self._buf, b""
        return rest

    def _event(self, block: bytes) -> object:
        """Read one event: _KEEP, _DROP (an event to cut) or _BAD (its JSON does not parse)."""
        if not self._interesting(block):
            return _KEEP
        data = b"\n".join(line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:"))
        if not data:
            return _KEEP
        if data == b"[DONE]":
            self.finished = True
            return _KEEP
        try:
            return _DROP if self._read(data, self) else _KEEP
        except msgspec.ValidationError:
            return _KEEP  # JSON of an unexpected shape: relayed, nothing learnt from it
        except msgspec.DecodeError:
            return _BAD

    def _interesting(self, data: bytes) -> bool:
        return _interesting(data) or any(m in data for m in self._markers)


def _with_data(block: bytes, data: bytes) -> bytes:
    """An SSE event block with its data lines replaced by one line of ``data``."""
    lines = [line for line in block.split(b"\n") if not line.startswith(b"data:")]
    return b"\n".join([*lines, b"data: " + data])


_KEEP, _DROP, _BAD = object(), object(), object()
