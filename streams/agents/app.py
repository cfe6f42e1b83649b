"""The Faust application the router and learner agents run in, and the Faust codec for our events.

``make_faust_app`` applies the embedded broker's (Tansu 0.6) workarounds only when ``embedded``:
one record per producer batch (Tansu reports a wrong log end after multi-record batches), short
session timeout and heartbeat (its group joins wait half the session timeout), and never an
idempotent or transactional producer. Against Apache Kafka the app keeps Faust's defaults.

Our events are Avro single-object encoded (``streams.events.codec``). The ``weave-avro`` codec
decodes into ``Event(name, value)``; bytes that are not a known event become ``Poison(reason, raw)``
instead of an exception, so an agent dead-letters them and keeps going.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.serializers import codecs

from streams.config import Settings
from streams.events.codec import DecodeError, EventCodec

log = logging.getLogger("weave.agents")

CODEC_NAME = "weave-avro"
DEFAULT_APP_ID = "weave-router"


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event: its record name (``Trace``, ``Decision`` …) and its value in the current schema."""

    name: str
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Poison:
    """Bytes that could not be decoded, and why; they go to router.dlq."""

    reason: str
    raw: bytes


class WeaveAvroCodec(codecs.Codec):
    """Faust codec: ``(record_name, dict)`` or pre-encoded bytes out, ``Event``/``Poison`` in."""

    def __init__(self, event_codec: EventCodec | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = event_codec or EventCodec()

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        if isinstance(obj, Event):
            return self.events.encode(obj.name, obj.value)
        name, value = obj
        return self.events.encode(name, value)

    def _loads(self, s: bytes) -> Any:
        try:
            name, value = self.events.decode(s)
        except DecodeError as exc:
            return Poison(str(exc), bytes(s))
        return Event(name, value)


def register_codec() -> None:
    """Make ``weave-avro`` known to Faust (idempotent; Faust's codec registry is process-wide)."""
    if CODEC_NAME not in codecs.codecs:
        codecs.register(CODEC_NAME, WeaveAvroCodec())


def faust_settings(settings: Settings, *, embedded: bool, single_record_batches: bool | None = None) -> dict[str, Any]:
    """The Faust configuration for our workers; broker workarounds only when ``embedded``."""
    conf: dict[str, Any] = {
        "store": "memory://",
        "web_enabled": False,
        "autodiscover": False,
        "topic_partitions": settings.kafka.partitions,
        "topic_replication_factor": settings.kafka.replication_factor,
        # Topics are created up front by ensure_topics with explicit partition counts.
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_max_poll_records": 1000,
        "broker_commit_interval": 1.0,
        # At-least-once everywhere: every consumer dedups by event_id, and Tansu cannot do transactions.
        "processing_guarantee": "at_least_once",
    }
    if embedded:
        conf.update(
            broker_session_timeout=3.0,
            broker_heartbeat_interval=1.0,
            broker_rebalance_timeout=10.0,
            broker_request_timeout=10.0,
        )
        if single_record_batches is None or single_record_batches:
            conf["producer_max_batch_size"] = 1
    elif single_record_batches:
        conf["producer_max_batch_size"] = 1
    return conf


def make_faust_app(
    settings: Settings,
    bootstrap_servers: str,
    embedded: bool,
    worker_id: str,
    *,
    app_id: str = DEFAULT_APP_ID,
    single_record_batches: bool | None = None,
    **overrides: Any,
) -> faust.App:
    """A Faust app (consumer group ``app_id``) for one worker; agents are registered on it afterwards.

    Start it in a running loop with ``await app.start()`` and stop with ``await app.stop()``; agents
    are attached with ``streams.agents.router.attach_router`` and ``streams.agents.learner.attach_learner``
    (or use ``streams.agents.worker.Worker``, which does all of this).
    """
    register_codec()
    brokers = [f"kafka://{b.strip()}" for b in bootstrap_servers.split(",") if b.strip()]
    conf = faust_settings(settings, embedded=embedded, single_record_batches=single_record_batches)
    conf.update(overrides)
    app = faust.App(app_id, broker=brokers, **conf)
    return app


__all__ = [
    "CODEC_NAME",
    "Event",
    "Poison",
    "WeaveAvroCodec",
    "faust_settings",
    "make_faust_app",
    "register_codec",
]
