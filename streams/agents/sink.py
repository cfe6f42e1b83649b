"""The sink agent: traces, decisions and outcomes from Kafka into ClickHouse, exactly once per event id.

Why a plain aiokafka consumer group and not a Faust stream: the sink's guarantee is "offsets are
committed only after the rows are in ClickHouse", which is direct with manual commits around a
``BatchWriter``; it reads whole fetches at once (Faust hands events over one by one, ~10x slower); and
it must survive the embedded broker losing its memory (a restarted Tansu starts with empty logs and
no committed offsets), where Faust's read-offset bookkeeping would silently skip the new, lower
offsets. It still scales like the Faust agents: each worker joins the ``weave-sink`` group and gets a
share of the partitions.

Loop: fetch up to ``batch_size`` records → decode (poison → router.dlq + ``dead_letters``) → when the
batch is due by size or time, write it (retrying with backoff while ClickHouse is down; nothing is
committed meanwhile) → dead-letter rows ClickHouse rejected → commit. A worker killed between the
write and the commit re-reads that batch: ReplacingMergeTree on ``event_id`` (and the writer's
recent-id set) makes the repeat invisible to ``FINAL`` queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from streams.agents.dlq import REASON, SOURCE_TOPIC, STAGE, DeadLetter, read_headers
from streams.agents.records import dead_letter_row
from streams.agents.topics import Topics, ensure
from streams.config import Settings
from streams.events.codec import DecodeError, EventCodec
from streams.storage.writer import Batch, BatchWriter, Rejected, StorageUnavailable

log = logging.getLogger("weave.sink")

SINK_GROUP = "weave-sink"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: SinkAgent) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.sink._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.sink._on_assigned(list(assigned))


class SinkAgent:
    """One sink worker. ``await start()`` / ``await stop()``; ``client`` is a clickhouse-connect client."""

    def __init__(
        self,
        bootstrap_servers: str,
        client: Any,
        *,
        group_id: str = SINK_GROUP,
        topics: Topics | None = None,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        embedded: bool = False,
        partitions: int = 4,
        replication: int = 1,
        codec: EventCodec | None = None,
        writer: BatchWriter | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
        worker_id: str = "sink",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = topics or Topics()
        self.batch_size = batch_size
        self.embedded = embedded
        self.partitions = partitions
        self.replication = replication
        self.codec = codec or EventCodec()
        self.writer = writer or BatchWriter(client, batch_size=batch_size, flush_interval_s=flush_interval_s)
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.worker_id = worker_id
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self._handled: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._committed: dict[TopicPartition, int] = {}  # what we last committed (restart detection)
        self._dead: list[DeadLetter] = []
        self._inflight: asyncio.Task[bool] | None = None
        self._revoking = False
        self.storage_down = False
        self.rows_written = 0
        self.dead_letters = 0
        self.commits = 0
        self.storage_retries = 0
        self.last_error = ""
        self.assigned: set[TopicPartition] = set()

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap_servers: str, client: Any, **kwargs: Any) -> SinkAgent:
        """``embedded`` defaults to ``settings.embedded_kafka``; pass it when the broker was started for us."""
        kwargs.setdefault("embedded", settings.embedded_kafka)
        kwargs.setdefault("batch_size", settings.clickhouse.batch_size)
        kwargs.setdefault("flush_interval_s", settings.clickhouse.flush_interval_s)
        kwargs.setdefault("partitions", settings.kafka.partitions)
        kwargs.setdefault("replication", settings.kafka.replication_factor)
        return cls(bootstrap_servers, client, **kwargs)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.writer.start()
        await ensure(self.bootstrap_servers, self.topics, self.partitions, self.replication)
        timeouts: dict[str, int] = (
            {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 10000}
            if self.embedded
            else {}
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"weave-sink-{self.worker_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            # The writer batches for flush_interval_s anyway: a fetch that waits for 64 KB (or 200 ms)
            # instead of returning with every produce costs the broker and this loop a fraction.
            fetch_max_wait_ms=200, fetch_min_bytes=64 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **timeouts,
        )
        self.consumer.subscribe(
            [self.topics.traces, self.topics.decisions, self.topics.outcomes, self.topics.dlq],
            listener=_Rebalance(self),
        )
        await self.consumer.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=2)
        await self.producer.start()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"weave-sink-{self.worker_id}")

    async def stop(self, *, commit: bool = True) -> None:
        """Stop; with ``commit`` the pending batch is written and committed first (best effort).

        ``commit=False`` is a crash without losing the process: nothing pending is written or committed.
        """
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if commit and self.consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_and_commit(retry=False), 10)
        else:
            if self._inflight is not None:
                self._inflight.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._inflight
                self._inflight = None
            self.writer.clear()
            self._dead.clear()
            self._handled.clear()
        if self.consumer is not None:
            # Auto-commit is off: closing the consumer commits nothing by itself.
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 5)
            self.producer = None

    def stats(self) -> dict[str, Any]:
        return {
            "rows_written": self.rows_written,
            "duplicates_skipped": self.writer.duplicates_skipped,
            "dead_letters": self.dead_letters,
            "pending": len(self.writer),
            "commits": self.commits,
            "storage_retries": self.storage_retries,
            "storage_down": self.storage_down,
            "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in self.assigned),
            "last_error": self.last_error,
        }

    # --- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self._stopping:
            try:
                room = max(1, self.batch_size - len(self.writer))
                timeout_ms = max(1, int(self.writer.time_to_due() * 1000))
                batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=room)
                for tp, records in batch.items():
                    for record in records:
                        self._handle(tp, record)
                if self.writer.due():
                    await self._start_write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the worker alive: log, back off, go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("sink loop error")
                await asyncio.sleep(self.retry_initial_s)

    def _handle(self, tp: TopicPartition, record: Any) -> None:
        self._handled[tp] = record.offset + 1
        if tp.topic == self.topics.dlq:
            self._store_letter(tp, record)
            return
        value = record.value
        try:
            name, event = self.codec.decode(value)
        except DecodeError as exc:
            self._dead_letter(tp, record, str(exc), "decode")
            return
        if self.writer.table_for(name) is None:
            self._dead_letter(tp, record, f"{name} events have no table (wrong topic?)", "decode")
            return
        self.writer.add(name, event, conformant=True)

    def _store_letter(self, tp: TopicPartition, record: Any) -> None:
        """A dead letter someone else published (the gateway's producer, the router agent) into
        ``dead_letters``; the ones this sink made itself were stored when it made them."""
        headers = read_headers(record.headers)
        source, stage = headers.get(SOURCE_TOPIC, ""), headers.get(STAGE, "")
        if stage in ("decode", "store") and source in (self.topics.traces, self.topics.decisions, self.topics.outcomes):
            return
        value = record.value if isinstance(record.value, bytes) else b""
        row = dead_letter_row(tp.topic, tp.partition, record.offset, headers.get(REASON, "unknown"), value)
        row["topic"] = source or tp.topic
        self.writer.add("DeadLetter", row)

    def _dead_letter(self, tp: TopicPartition, record: Any, reason: str, stage: str) -> None:
        value = record.value if isinstance(record.value, bytes) else b""
        self._dead.append(DeadLetter(tp.topic, tp.partition, record.offset, reason, stage, record.key, value))
        self.writer.add("DeadLetter", dead_letter_row(tp.topic, tp.partition, record.offset, reason, value))

    # --- writing and committing ----------------------------------------------------------------------
    # One batch is written in the background while the next one is read and decoded; batches are
    # written and committed strictly in order (at most one in flight).

    async def _start_write(self) -> None:
        await self._await_inflight()
        if not len(self.writer) and not self._handled:
            return
        job = (self.writer.take(), self._handled, self._dead)
        self._handled, self._dead = {}, []
        self._inflight = asyncio.create_task(self._write_and_commit(*job, retry=True))

    async def _await_inflight(self) -> bool:
        task, self._inflight = self._inflight, None
        if task is None:
            return True
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            return False

    async def _flush_and_commit(self, *, retry: bool = True) -> bool:
        """Write and commit everything read so far, now (stop, rebalance)."""
        ok = await self._await_inflight()
        job = (self.writer.take(), self._handled, self._dead)
        self._handled, self._dead = {}, []
        return await self._write_and_commit(*job, retry=retry) and ok

    async def _write_and_commit(self, batch: Batch, handled: dict[TopicPartition, int],
                                dead: list[DeadLetter], *, retry: bool) -> bool:
        async with self._lock:
            delay = self.retry_initial_s
            result = None
            while batch.count:
                try:
                    result = await self.writer.write(batch)
                    self.storage_down = False
                    break
                except StorageUnavailable as exc:
                    self.storage_down = True
                    self.storage_retries += 1
                    self.last_error = str(exc)
                    if not retry or self._stopping or self._revoking:
                        return False
                    log.warning("%s; retrying in %.1fs (offsets not committed)", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
            if result is not None:
                self.rows_written += result.written
                if result.rejected:
                    dead = dead + self._rejected_letters(result.rejected)
            if dead:
                await self._publish_dead(dead)
            return await self._commit(handled)

    def _rejected_letters(self, rejected: list[Rejected]) -> list[DeadLetter]:
        """Rows ClickHouse refused: to router.dlq now, and to ``dead_letters`` with the next batch."""
        topic_of = {"traces": self.topics.traces, "decisions": self.topics.decisions,
                    "outcomes": self.topics.outcomes}
        letters = []
        for r in rejected:
            if r.table == "dead_letters":
                log.error("a dead letter itself was rejected: %s", r.reason)
                continue
            topic = topic_of.get(r.table, r.table)
            try:
                raw = self.codec.encode(_RECORD_OF_TABLE[r.table], r.event)
            except Exception:
                raw = repr(r.event).encode()
            letters.append(DeadLetter(topic, -1, -1, r.reason, "store",
                                      str(r.event.get("session_id") or "").encode() or None, raw))
            self.writer.add("DeadLetter", {
                "event_id": f"rejected/{r.table}/{r.event.get('event_id', '')}", "ts_ms": int(time.time() * 1000),
                "topic": topic, "reason": r.reason, "payload": raw.hex(),
            })
        return letters

    async def _publish_dead(self, dead: list[DeadLetter]) -> None:
        assert self.producer is not None
        futures = [
            await self.producer.send(self.topics.dlq, d.value, key=d.key, headers=d.headers()) for d in dead
        ]
        await asyncio.gather(*futures)
        self.dead_letters += len(dead)
        for d in dead:
            log.warning("dead letter from %s/%s@%s: %s", d.topic, d.partition, d.offset, d.reason)

    async def _commit(self, handled: dict[TopicPartition, int]) -> bool:
        if not handled or self.consumer is None:
            return True
        offsets = {tp: off for tp, off in handled.items() if tp in self.assigned}
        if not offsets:
            return True
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: the next owner re-reads them; the tables dedup.
            self.last_error = f"commit: {type(exc).__name__}: {exc}"
            log.warning("offset commit failed (%s); the batch will be re-read and deduplicated", exc)
            return False
        self._committed.update(offsets)
        self.commits += 1
        return True

    # --- rebalances --------------------------------------------------------------------------------

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        # Hand the partitions over clean: what we read is written and committed, or forgotten (the
        # next owner reads it again from the last commit).
        self._revoking = True
        try:
            ok = await asyncio.wait_for(self._flush_and_commit(retry=False), 10)
        except Exception:
            ok = False
        finally:
            self._revoking = False
        if not ok:
            self.writer.clear()
            self._dead.clear()
        self._handled.clear()
        self.assigned -= set(revoked)

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self.consumer is not None
        self.assigned = set(assigned)
        for tp in assigned:
            try:
                committed = await self.consumer.committed(tp)
            except KafkaError:
                committed = None
            if committed is None and self._committed.get(tp):
                # We committed here before and the broker no longer knows: it lost its state
                # (the embedded broker keeps everything in memory). Its log restarted at 0.
                log.warning("committed offset of %s/%s vanished: reading it from the start", tp.topic, tp.partition)
                await self.consumer.seek_to_beginning(tp)
                self._committed.pop(tp, None)


_RECORD_OF_TABLE = {"traces": "Trace", "decisions": "Decision", "outcomes": "Outcome"}
