"""Server-sent events: an incremental frame parser and a frame formatter.

``SSEDecoder.feed(chunk)`` takes bytes as they arrive from the network (frames may be split anywhere,
even inside a UTF-8 character or a CRLF) and returns the complete ``(event, data)`` frames so far.
``frame()`` / ``json_frame()`` build the bytes the gateway writes back to a client.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

Frame = tuple[str | None, str]


class SSEDecoder:
    """Incremental parser following the WHATWG event-stream rules (comments, multi-line data, CR/LF)."""

    __slots__ = ("_buf", "_event", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buf + chunk if self._buf else chunk
        tail = b""
        if b"\r" in buf:
            # A trailing CR may be the first half of a CRLF split across chunks: keep it for later.
            if buf.endswith(b"\r"):
                buf, tail = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop() + tail
        out: list[Frame] = []
        for raw in lines:
            self._line(raw, out)
        return out

    def flush(self) -> list[Frame]:
        """End of stream: dispatch a last frame that lacked its blank line."""
        out: list[Frame] = []
        if self._buf:
            rest, self._buf = self._buf.rstrip(b"\r"), b""
            self._line(rest, out)
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[Frame]) -> None:
        if not raw:
            if self._data:
                out.append((self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if raw[0] == 0x3A:  # ":" comment / keep-alive
            return
        name, sep, value = raw.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace") or None
        # ``id`` and ``retry`` do not matter to a proxy that never reconnects.


def frame(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` may contain newlines (each becomes its own ``data:`` line)."""
    if isinstance(data, str):
        data = data.encode()
    if b"\n" in data:
        data = data.replace(b"\n", b"\ndata: ")
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def json_frame(obj: Any, event: str | None = None) -> bytes:
    """A frame whose data is ``obj`` as compact JSON (msgspec never emits raw newlines)."""
    if event is None:
        return b"data: " + _encode(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + _encode(obj) + b"\n\n"


DONE_FRAME = b"data: [DONE]\n\n"
