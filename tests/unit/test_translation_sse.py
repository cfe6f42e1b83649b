"""SSE decoding must survive any chunking; frames must be what SSE clients parse back."""

from __future__ import annotations

import random

from streams.translation.sse import DONE_FRAME, SSEDecoder, frame, json_frame

STREAM = (
    b": keep-alive\r\n\r\n"
    b'event: message_start\r\ndata: {"a": "\xc3\xa9t\xc3\xa9"}\r\n\r\n'
    b"data: line1\ndata: line2\n\n"
    b"event: ping\ndata:{}\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [("message_start", '{"a": "été"}'), (None, "line1\nline2"), ("ping", "{}"), (None, "[DONE]")]


def test_whole_stream() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


def test_any_split_gives_the_same_frames() -> None:
    rng = random.Random(7)
    for _ in range(200):
        dec = SSEDecoder()
        out = []
        pos = 0
        while pos < len(STREAM):
            step = rng.randint(1, 7)
            out += dec.feed(STREAM[pos : pos + step])
            pos += step
        out += dec.flush()
        assert out == EXPECTED


def test_flush_dispatches_unterminated_last_frame() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: x\n") == []
    assert dec.flush() == [(None, "x")]


def test_lone_cr_line_endings() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"event: e\rdata: d\r\r") + dec.flush() == [("e", "d")]


def test_frames_round_trip() -> None:
    raw = frame("a\nb", "evt") + json_frame({"k": [1, "x"]}) + DONE_FRAME
    assert SSEDecoder().feed(raw) == [("evt", "a\nb"), (None, '{"k":[1,"x"]}'), (None, "[DONE]")]
