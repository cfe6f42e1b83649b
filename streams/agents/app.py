"""What the router and learner agents run in: ``BatchApp`` (a plain aiokafka consumer group reading whole
fetches; the default, see its docstring for why) or a Faust application, and the codec for our events.

``make_faust_app`` applies the embedded broker's (Tansu 0.6) workarounds only when ``embedded``:
one record per producer batch (Tansu reports a wrong log end after multi-record batches), short
session timeout and heartbeat (its group joins wait half the session timeout), and never an
idempotent or transactional producer. Against Apache Kafka the app keeps Faust's defaults.

Our events are Avro single-object encoded (``streams.events.codec``). The ``weave-avro`` codec
decodes into ``Event(name, value)``; bytes that are not a known event become ``Poison(reason, raw)``
instead of an exception, so an agent dead-letters them and keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError
from faust.serializers import codecs

from streams.config import Settings
from streams.events.codec import DecodeError, EventCodec

log = logging.getLogger("weave.agents")

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
    """Faust codec: ``(record_name, dict)`` or pre-encoded bytes out, ``Event``/``Poison`` in.

    Topics take an instance (``value_serializer=WeaveAvroCodec(codec)``), so nothing is registered in
    Faust's process-wide codec registry."""

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
        return decode_event(self.events, s)


def decode_event(codec: EventCodec, raw: bytes | None) -> Event | Poison:
    """``Event`` for our Avro bytes, ``Poison`` (never an exception) for anything else."""
    if raw is None:
        return Poison("empty record value", b"")
    try:
        name, value = codec.decode(raw)
    except DecodeError as exc:
        return Poison(str(exc), bytes(raw))
    return Event(name, value)


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
    are attached with ``streams.agents.route_agent.attach_router`` and ``streams.agents.learner.attach_learner``
    (or use ``streams.agents.worker.Worker``, which does all of this).
    """
    brokers = [f"kafka://{b.strip()}" for b in bootstrap_servers.split(",") if b.strip()]
    conf = faust_settings(settings, embedded=embedded, single_record_batches=single_record_batches)
    conf.update(overrides)
    app = faust.App(app_id, broker=brokers, **conf)
    return app


Batch = list[tuple[Any, "Event | Poison"]]  # (ConsumerRecord, decoded value), in log order per partition
# A handler queues its outputs and returns their delivery futures (not awaited: see ``BatchApp._step``).
BatchHandler = Callable[[Batch], Awaitable["list[asyncio.Future[Any]] | None"]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, app: BatchApp) -> None:
        self.app = app

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Wait for the batch in hand: its outputs are delivered and its offsets committed (or not,
        # and the next owner re-reads it) before the partitions move.
        self.app.rebalancing = True
        async with self.app.lock:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.app.drain(), 10)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.app.rebalancing = False


class BatchApp:
    """The router and learner agents' consumer: one aiokafka consumer group, whole fetches at a time.

    Why not Faust's stream (measured on the embedded broker, 2 cores): a Faust agent doing nothing
    but ``stream.take_events(1000)`` tops out at ~3,800 events/s, while ``getmany`` plus our Avro
    decode reads ~50,000/s. The router's target is 5,000 requests/s and the learner's 10,000
    outcomes/s (three events each), so Faust's per-event machinery alone is over budget. The
    semantics stay Faust's: one group (``app_id``), partitions split between workers, co-partitioned
    topics assigned together (range assignor: partition *n* of every topic goes to the same member,
    so a session's decisions, traces and outcomes meet in one learner), at-least-once (a batch's
    offsets are committed only after the outputs ``handler`` queued were acknowledged; if it raises or
    a delivery fails, the batch is read again).

    ``handlers[topic](batch)`` gets one fetch's records of that topic (each partition's in log
    order); ``on_tick`` runs every ``tick_s`` between batches (the learner's publish cadence).
    """

    def __init__(self, bootstrap_servers: str, group_id: str, handlers: dict[str, BatchHandler], *,
                 embedded: bool, client_id: str = "weave-worker", max_records: int = 1000,
                 on_tick: Callable[[], Awaitable[None]] | None = None, tick_s: float = 0.5,
                 event_codec: EventCodec | None = None, retry_s: float = 0.5) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.handlers = handlers
        self.embedded = embedded
        self.client_id = client_id
        self.max_records = max_records
        self.on_tick = on_tick
        self.tick_s = tick_s
        self.codec = event_codec or EventCodec()
        self.retry_s = retry_s
        self.lock = asyncio.Lock()
        self.rebalancing = True
        self.consumer: AIOKafkaConsumer | None = None
        self.commits = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._inflight: _InFlight | None = None

    async def start(self) -> None:
        timeouts: dict[str, int] = (
            {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 10000}
            if self.embedded else {}
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id, client_id=self.client_id,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=self.max_records,
            fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024,
            partition_assignment_strategy=(RangePartitionAssignor,), **timeouts,
        )
        self.consumer.subscribe(list(self.handlers), listener=_Listener(self))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"weave-agents-{self.client_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            async with self.lock:  # let the batch in hand finish, then deliver and commit it
                task.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.drain(), 10)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def _run(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        next_tick = time.monotonic() + self.tick_s
        while True:
            wait = max(0.001, next_tick - time.monotonic()) if self.on_tick is not None else 0.5
            if self._inflight is not None:
                wait = min(wait, 0.02)  # nothing new soon: settle the batch in flight
            try:
                fetched = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.max_records)
            except KafkaError as exc:  # keep the worker alive: log, back off, go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("agent fetch failed: %s", exc)
                await asyncio.sleep(self.retry_s)
                continue
            async with self.lock:
                await self._step(consumer, fetched)
                if self.on_tick is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    try:
                        await self.on_tick()
                    except Exception as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        log.exception("agent timer failed")

    async def _step(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Handle this fetch (queueing its outputs), then settle the previous one: await its outputs'
        delivery and commit its offsets. Handling batch N+1 while N's outputs travel keeps the CPU
        busy; offsets are still committed only for delivered batches, in order."""
        pending: _InFlight | None = None
        failed: dict[TopicPartition, int] = {}
        if fetched:
            first = {tp: records[0].offset for tp, records in fetched.items()}
            try:
                futures = await self._dispatch(fetched)
                pending = _InFlight(futures, first, {tp: records[-1].offset + 1 for tp, records in fetched.items()})
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("agent batch failed; it will be read again")
                failed = first
        previous, self._inflight = self._inflight, pending
        if not await self._settle(consumer, previous):
            assert previous is not None
            # Re-read the failed batch and everything after it (at-least-once: repeats are fine).
            for tp, offset in {**(pending.first if pending else {}), **failed}.items():
                if tp not in previous.first:
                    failed[tp] = offset
            self._inflight = None
        if failed:
            for tp, offset in failed.items():
                with contextlib.suppress(Exception):
                    consumer.seek(tp, offset)
            await asyncio.sleep(self.retry_s)

    async def _dispatch(self, fetched: dict[TopicPartition, list[Any]]) -> list[asyncio.Future[Any]]:
        by_topic: dict[str, Batch] = {}
        decode, codec = decode_event, self.codec
        for tp, records in fetched.items():
            by_topic.setdefault(tp.topic, []).extend((r, decode(codec, r.value)) for r in records)
        futures: list[asyncio.Future[Any]] = []
        for topic, batch in by_topic.items():
            futures.extend(await self.handlers[topic](batch) or ())
        return futures

    async def _settle(self, consumer: AIOKafkaConsumer, batch: _InFlight | None) -> bool:
        """Await a handled batch's deliveries and commit it; False (and re-read it) if one failed."""
        if batch is None:
            return True
        results = await asyncio.gather(*batch.futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.last_error = f"delivery: {type(errors[0]).__name__}: {errors[0]}"
            log.warning("%d outputs not delivered (%s); the batch will be read again", len(errors), errors[0])
            for tp, offset in batch.first.items():
                with contextlib.suppress(Exception):
                    consumer.seek(tp, offset)
            return False
        try:
            await consumer.commit(batch.next)
            self.commits += 1
        except (CommitFailedError, KafkaError, AssertionError) as exc:
            # A rebalance took the partitions: their next owner re-reads the batch (at-least-once).
            self.last_error = f"commit: {type(exc).__name__}: {exc}"
            log.warning("offset commit failed (%s); the batch will be re-read", exc)
        return True

    async def drain(self) -> None:
        """Settle the batch in flight now (rebalance, stop)."""
        batch, self._inflight = self._inflight, None
        if batch is not None and self.consumer is not None:
            await self._settle(self.consumer, batch)


@dataclass(slots=True)
class _InFlight:
    """A handled batch whose outputs are on their way: delivery futures, its first and next offsets."""

    futures: list[asyncio.Future[Any]]
    first: dict[TopicPartition, int]
    next: dict[TopicPartition, int]


__all__ = [
    "BatchApp",
    "Event",
    "Poison",
    "decode_event",
    "WeaveAvroCodec",
    "faust_settings",
    "make_faust_app",
]
