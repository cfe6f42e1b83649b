"""Events: the Avro codec, event ids, topic names (schemas are package data under ``schemas/``)."""

from __future__ import annotations

from streams.events.codec import DecodeError, EventCodec, SchemaVersion
from streams.events.ids import new_id, now_ms
from streams.events.names import TopicSpec, topic_specs

__all__ = [
    "DecodeError",
    "EventCodec",
    "SchemaVersion",
    "TopicSpec",
    "new_id",
    "now_ms",
    "topic_specs",
]
