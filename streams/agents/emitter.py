"""KafkaEventSink: the gateway's event producer. The request path only appends to a bounded buffer.

How it never blocks and never loses an event:

- ``emit_decision`` / ``emit_trace`` / ``emit_outcome`` encode the event, write it to the journal
  (``streams.agents.journal``: one append, no fsync, so it outlives a killed process) and append it
  to an in-memory deque. A background task produces them in batches. On start, what the journal of a
  previous run still holds (not known to be in ClickHouse) is produced again first.
- When a produce fails or times out, the unconfirmed events and everything after them go to a spill
  file under ``data_dir``, in order, while the gateway keeps serving. A probe re-creates the topics
  (the embedded broker keeps them in memory only, so a restarted broker has none) and a fresh
  producer; then the file is replayed in order before direct producing resumes.
- When the buffer is full (the background task cannot keep up), the buffer is spilled to the file
  synchronously rather than dropping events.
- At-least-once: an event whose acknowledgement was lost may be produced twice; every consumer
  dedups by ``event_id`` (ClickHouse tables are ReplacingMergeTree on it).

Against Apache Kafka the producer is idempotent (acks=all). On the embedded broker it is not
(unsupported there); batches of several records are kept because no consumer of these topics
relies on the broker's reported log end (the one thing Tansu gets wrong after such batches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import murmur2

from streams.agents.dlq import DeadLetter, DeadLetterFile, carried
from streams.agents.journal import Journal
from streams.agents.records import bounded, conform, decision_event
from streams.agents.spill import Item, SpillFile
from streams.agents.topics import Topics, ensure
from streams.config import Settings
from streams.events.codec import EventCodec
from streams.infra.capabilities import start_producer
from streams.routing.decision import Decision

log = logging.getLogger("weave.emitter")

_DECISION = 0
_RECORD = 1
# What the broker (or the producer, before sending) refuses for good: retrying cannot help.
REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidMessageError,
           CorruptRecordException, UnsupportedForMessageFormatError)
# Events whose string fields are cut to ``records.FIELD_LIMIT`` (a policy snapshot must stay whole).
_BOUNDED = frozenset({"Trace", "Decision", "Outcome"})
# The sink's consumer group (streams.agents.sink.SINK_GROUP): its commits say what is in ClickHouse.
STORED_BY_GROUP = "weave-sink"
# Record batch size of the emitter's producer (Kafka's request limit is 1 MB; our batches stay well under).
_BATCH_BYTES = 256 * 1024


class KafkaEventSink:
    """Implements the gateway's ``EventSink`` protocol (structurally) on Kafka; see module docstring."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        data_dir: str | Path,
        partitions: int = 4,
        replication: int = 1,
        buffer_size: int = 100_000,
        embedded: bool = False,
        codec: EventCodec | None = None,
        max_batch: int = 2000,
        send_timeout_s: float = 10.0,
        retry_interval_s: float = 0.5,
        single_record_batches: bool = False,
        spill_name: str = "events.spill",
        topics: Topics | None = None,
        replay_window: int = 20_000,
        journal: bool = True,
        sink_group: str = STORED_BY_GROUP,
        trim_interval_s: float = 1.0,
        linger_s: float = 0.01,
    ) -> None:
        self.topics = topics or Topics()
        # The last events the broker acknowledged: a broker that comes back without its topics (the
        # embedded one keeps them in memory only) lost whatever the consumers had not read yet, so
        # these are sent again (consumers dedup by event_id). 0 disables.
        self._recent: deque[Item] = deque(maxlen=replay_window) if replay_window > 0 else deque(maxlen=0)
        self._resend: list[Item] = []
        # Highest offset the broker acknowledged per (topic, partition): a log that comes back shorter
        # than that lost events, whoever re-created the topic (the embedded broker auto-creates unknown
        # topics on any client's metadata request, so "ensure created them" alone misses restarts).
        self._acked: dict[tuple[str, int], int] = {}
        self._partitions: dict[tuple[bytes, int], int] = {}  # (key, partition count) -> partition
        self._connected_once = False
        self.resent = 0
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication = replication
        self.capacity = buffer_size
        self.embedded = embedded
        self.codec = codec or EventCodec()
        self.max_batch = max_batch
        self.send_timeout_s = send_timeout_s
        self.retry_interval_s = retry_interval_s
        self.single_record_batches = single_record_batches
        self.spill = SpillFile(Path(data_dir) / "spill" / spill_name)
        self.journal = Journal(
            Path(data_dir) / "journal" / spill_name.removesuffix(".spill"),
            stored_topics=(self.topics.decisions, self.topics.traces, self.topics.outcomes),
        ) if journal else None
        self.sink_group = sink_group
        self.dead = DeadLetterFile(Path(data_dir) / "dead_letters" / (spill_name.removesuffix(".spill") + ".jsonl"))
        self.trim_interval_s = trim_interval_s
        # How long the first event of a batch waits for company: one produce request per ``linger_s``
        # instead of one per event costs the broker and every consumer a fraction (fetches return as
        # soon as anything arrived). The answer never waits for it: the journal already has the event.
        self.linger_s = linger_s
        self._trim_task: asyncio.Task[None] | None = None
        self._offsets_reader: AIOKafkaConsumer | None = None
        self._recovered = False
        self._buffer: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._down = True  # until the first successful connect
        self.sent = 0
        self.idempotent = False  # what the broker granted at the last connect
        self.encode_failures = 0
        self.overflow_spills = 0
        self.last_error = ""

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap_servers: str, **kwargs: Any) -> KafkaEventSink:
        """``embedded`` defaults to ``settings.embedded_kafka``; pass it when the broker was started for us."""
        kwargs.setdefault("embedded", settings.embedded_kafka)
        kwargs.setdefault("data_dir", settings.data_dir)
        kwargs.setdefault("partitions", settings.kafka.partitions)
        kwargs.setdefault("replication", settings.kafka.replication_factor)
        kwargs.setdefault("buffer_size", settings.kafka.buffer_size)
        if kwargs["embedded"]:
            # A loopback broker answers in milliseconds or not at all: notice a restart fast and spill,
            # as the chaos suite's broker-kill scenario exercises (10 s left a restart unnoticed).
            kwargs.setdefault("send_timeout_s", 2.0)
            kwargs.setdefault("retry_interval_s", 0.2)
        return cls(bootstrap_servers, **kwargs)

    # --- the request path: append only ----------------------------------------------------------

    def emit_decision(self, decision: Decision, **context: Any) -> None:
        self._append((_DECISION, self.topics.decisions, "Decision", decision, context))

    def emit_trace(self, trace: dict[str, Any]) -> None:
        self._append((_RECORD, self.topics.traces, "Trace", trace, {}))

    def emit_outcome(self, outcome: dict[str, Any]) -> None:
        self._append((_RECORD, self.topics.outcomes, "Outcome", outcome, {}))

    def emit(self, topic: str, record_name: str, value: dict[str, Any]) -> None:
        """Any other event (keyed by its ``session_id``, or by ``policy`` for snapshots)."""
        self._append((_RECORD, topic, record_name, value, {}))

    def _append(self, pending: tuple[int, str, str, Any, dict[str, Any]]) -> None:
        item = self._encode(*pending)
        if item is None:
            return
        if self.journal is not None:
            self.journal.append(item)
        if len(self._buffer) >= self.capacity:
            self._overflow()
        self._buffer.append(item)
        if not self._wake.is_set():
            self._wake.set()

    def _overflow(self) -> None:
        # Rare: the producer task is stuck. Keep order (file first, then new events behind it).
        self.overflow_spills += 1
        self.spill.append_many(self._take(len(self._buffer)))

    # --- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self._down

    def buffered(self) -> int:
        return len(self._buffer)

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "buffered": len(self._buffer),
            "sent": self.sent,
            "spilled": self.spill.appended,
            "replayed": self.spill.replayed,
            "resent": self.resent,
            "spill_pending_bytes": self.spill.pending_bytes(),
            "encode_failures": self.encode_failures,
            "dead_letters": self.dead.written,
            "journal_events": self.journal.pending_events() if self.journal is not None else 0,
            "journal_segments_deleted": self.journal.deleted if self.journal is not None else 0,
            "last_error": self.last_error,
        }

    def health(self) -> str:
        if self._down:
            return f"degraded: broker unreachable, spilling to disk ({self.spill.pending_bytes()} bytes)"
        if self.spill.pending:
            return "degraded: replaying spilled events"
        return "ok"

    async def idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything appended so far reached the broker (tests, graceful shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (not self._buffer and not self.spill.pending and not self._down and not self._inflight
                    and not self._resend):
                return True
            await asyncio.sleep(0.02)
        return False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._inflight = False
            self._recover_journal()
            await self._connect()
            self._task = asyncio.create_task(self._run(), name="weave-emitter")
            if self.journal is not None:
                self._trim_task = asyncio.create_task(self._trim_loop(), name="weave-journal-trim")

    def _recover_journal(self) -> None:
        """Queue what a previous run's journal holds ahead of everything (the spill is a subset of it)."""
        if self.journal is None or self._recovered:
            return
        self._recovered = True
        old = self.journal.recover()
        self.spill.reset()
        self.spill.append_many(old)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what we can within ``timeout_s``; whatever is left is spilled for the next start."""
        self._stopping = True
        self._wake.set()
        if self._trim_task is not None:
            self._trim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._trim_task
            self._trim_task = None
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        if self._buffer:
            self.spill.append_many(self._take(len(self._buffer)))
        await self._close_producer()
        self.spill.close()
        await self._close_offsets_reader()
        if self.journal is not None:
            self.journal.close()

    async def __aenter__(self) -> KafkaEventSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- background -----------------------------------------------------------------------------

    _inflight = False

    async def _run(self) -> None:
        while True:
            if self._stopping and (self._down or (not self._buffer and not self.spill.pending)):
                break
            if not self._buffer and not self.spill.pending and not self._down and not self._resend:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self._resend and not self._down:
                    await self._send_resend()
                elif self._down or self.spill.pending:
                    await self._recover_step()
                else:
                    await self._send_direct()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the producer task die: the gateway depends on it
                log.exception("emitter step failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(self.retry_interval_s)

    async def _send_direct(self) -> None:
        if self.linger_s > 0 and len(self._buffer) < self.max_batch and not self._stopping:
            await asyncio.sleep(self.linger_s)
        items = self._take(self.max_batch)
        self._inflight = True
        try:
            failed_from = await self._produce(items)
        finally:
            self._inflight = False
        self._acknowledged(len(items) if failed_from is None else failed_from)
        if failed_from is not None:
            # Keep order: the unconfirmed tail, then the whole buffer, go to the file.
            self.spill.append_many(items[failed_from:])
            self._down = True

    async def _send_resend(self) -> None:
        items, self._resend = self._resend, []
        self._inflight = True
        try:
            failed_from = await self._produce(items)
        finally:
            self._inflight = False
        done = len(items) if failed_from is None else failed_from
        self.resent += done
        if failed_from is not None:
            self._resend = items[failed_from:] + self._resend
            self._down = True

    async def _recover_step(self) -> None:
        # While the file holds anything, new events queue behind it in the file (order).
        if self._buffer:
            self.spill.append_many(self._take(len(self._buffer)))
        if self._down and not await self._connect():
            await self._sleep_or_stop(self.retry_interval_s)
            return
        if self._resend:
            return  # older than the file: they go first
        chunk = self.spill.read(self.max_batch)
        if not chunk:
            return
        items = [item for item, _ in chunk]
        self._inflight = True
        try:
            failed_from = await self._produce(items)
        finally:
            self._inflight = False
        done = len(items) if failed_from is None else failed_from
        self._acknowledged(done)
        if done:
            self.spill.replayed += done
            self.spill.commit(chunk[done - 1][1])
        if failed_from is not None:
            self._down = True

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested(), seconds)

    async def _stop_requested(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    def _take(self, n: int) -> list[Item]:
        buf = self._buffer
        return [buf.popleft() for _ in range(min(n, len(buf)))]

    def _encode(self, kind: int, topic: str, name: str, payload: Any, context: dict[str, Any]) -> Item | None:
        try:
            value = decision_event(payload, **context) if kind == _DECISION else conform(self.codec, name, payload)
            if name in _BOUNDED:
                value = bounded(value, keep=("features",))
            key = value.get("policy") if name == "PolicySnapshot" else value.get("session_id")
            return topic, str(key).encode() if key else None, self.codec.encode(name, value)
        except Exception as exc:  # a malformed event must not fail the request that produced it
            self.encode_failures += 1
            self.last_error = f"cannot encode {name}: {type(exc).__name__}: {exc}"
            log.warning("dropping an event that cannot be encoded as %s: %s", name, exc)
            return None

    # --- the journal ------------------------------------------------------------------------------

    def _acknowledged(self, count: int) -> None:
        """``count`` more events, in accepted order, reached the broker for the first time."""
        if self.journal is not None and count:
            self.journal.acknowledge(count, self._acked)

    async def _trim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.trim_interval_s)
            try:
                await self.trim_journal()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("journal trim failed: %s", exc)
                await self._close_offsets_reader()

    async def trim_journal(self) -> int:
        """Delete the journal segments whose events the sink group has committed; how many went."""
        journal = self.journal
        if journal is None:
            return 0
        journal.acknowledge(0, self._acked)
        if not journal.removable():
            return 0
        tps = journal.awaiting()
        committed: dict[tuple[str, int], int | None] = {}
        if tps:
            reader = self._offsets_reader
            if reader is None:
                # A group member that never subscribes: it only reads the group's committed offsets.
                reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=self.sink_group,
                                          enable_auto_commit=False,
                                          request_timeout_ms=int(max(self.send_timeout_s, 5.0) * 1000))
                async with asyncio.timeout(max(self.send_timeout_s, 5.0)):
                    await reader.start()
                self._offsets_reader = reader
            async with asyncio.timeout(max(self.send_timeout_s, 5.0)):
                for topic, partition in tps:
                    committed[(topic, partition)] = await reader.committed(TopicPartition(topic, partition))
        return journal.trim(committed)

    async def final_trim(self, timeout_s: float = 3.0) -> None:
        """After the sink stopped (it commits what it stored): trim once more, so a clean restart does
        not send again what is already stored. Best effort."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.trim_journal(), timeout_s)
        await self._close_offsets_reader()

    async def _close_offsets_reader(self) -> None:
        reader, self._offsets_reader = self._offsets_reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.stop(), 2.0)

    async def _produce(self, items: list[Item]) -> int | None:
        """Send ``items``; None when all are acknowledged, else the index of the first unconfirmed one.
        An item refused for good (too large, invalid) is dead-lettered and counts as done."""
        producer = self._producer
        if producer is None:
            return 0
        results: list[Any] = [None] * len(items)
        try:
            async with asyncio.timeout(self.send_timeout_s):
                if self.single_record_batches:
                    await self._send_each(producer, items, range(len(items)), results)
                else:
                    await self._send_batches(producer, items, results)
        except Exception as exc:
            self.last_error = f"produce: {type(exc).__name__}: {exc}"
            log.warning("broker unreachable (%s); spilling events to %s", self.last_error, self.spill.path)
            results = [_outcome(r, exc) for r in results]
        letters: list[DeadLetter] = []
        failed_from: int | None = None
        for i, r in enumerate(results):
            if isinstance(r, REFUSED):
                topic, key, value = items[i]
                letters.append(DeadLetter(topic, -1, -1, f"refused by the broker: {type(r).__name__}: {r}",
                                          "produce", key, value))
            elif not isinstance(r, Ack):
                failed_from = i
                if isinstance(r, BaseException) and not self.last_error:
                    self.last_error = f"produce: {type(r).__name__}: {r}"
                break
        done = len(items) if failed_from is None else failed_from
        self.sent += done - len(letters)
        self._recent.extend(item for item, r in zip(items[:done], results, strict=False) if not isinstance(r, REFUSED))
        if letters:
            await self._dead_letter(letters)
        if failed_from is not None:
            await self._close_producer()
            return failed_from
        acked = self._acked
        for r in results:
            if isinstance(r, Ack):
                tp = (r.topic, r.partition)
                if r.offset > acked.get(tp, -1):
                    acked[tp] = r.offset
        return None

    async def _send_each(self, producer: AIOKafkaProducer, items: list[Item], which: Iterable[int],
                         results: list[Any]) -> None:
        """One ``send`` per item (single-record batches, oversized items, a refused batch's items):
        a refusal then names the one item it concerns."""
        pending: list[tuple[int, asyncio.Future[Any]]] = []
        for i in which:
            topic, key, value = items[i]
            try:
                future = await producer.send(topic, value, key=key)
            except REFUSED as exc:
                results[i] = exc
                continue
            pending.append((i, future))
            results[i] = future
        for (i, _), r in zip(pending, await asyncio.gather(*(f for _, f in pending), return_exceptions=True),
                             strict=True):
            results[i] = r if isinstance(r, BaseException) else Ack(r.topic, r.partition, r.offset)

    async def _send_batches(self, producer: AIOKafkaProducer, items: list[Item], results: list[Any]) -> None:
        """The items as record batches, one per partition in accepted order: a tenth of the CPU of one
        ``send`` per record (futures, accumulator, pure-Python key hashing). Partitions are the ones
        ``send`` would pick (the producers' shared default partitioner), so a session's decisions,
        traces and outcomes still meet in one partition number."""
        groups: dict[tuple[str, int], list[int]] = {}
        single: list[int] = []
        counts: dict[str, list[int]] = {}
        for i, (topic, key, value) in enumerate(items):
            if len(value) > _BATCH_BYTES // 2:
                single.append(i)  # over the batch size: ``send`` checks it against the request limit
                continue
            parts = counts.get(topic)
            if parts is None:
                parts = counts[topic] = sorted(await producer.partitions_for(topic))
            groups.setdefault((topic, self._partition_of(key, parts)), []).append(i)
        submitted: list[tuple[asyncio.Future[Any], list[int]]] = []
        for (topic, partition), indices in groups.items():
            batch, members = producer.create_batch(), list[int]()
            for i in indices:
                _, key, value = items[i]
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start anew
                    submitted.append((await producer.send_batch(batch, topic, partition=partition), members))
                    batch, members = producer.create_batch(), []
                    batch.append(key=key, value=value, timestamp=None)
                members.append(i)
            batch.close()
            submitted.append((await producer.send_batch(batch, topic, partition=partition), members))
        if single:
            await self._send_each(producer, items, single, results)
        refused: list[int] = []
        outcomes = await asyncio.gather(*(f for f, _ in submitted), return_exceptions=True)
        for (_, members), r in zip(submitted, outcomes, strict=True):
            if isinstance(r, REFUSED):
                refused.extend(members)  # which record it was is found by sending them one by one
            elif isinstance(r, BaseException):
                for i in members:
                    results[i] = r
            else:
                for n, i in enumerate(members):
                    results[i] = Ack(r.topic, r.partition, r.offset + n)
        if refused:
            await self._send_each(producer, items, sorted(refused), results)

    def _partition_of(self, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            return random.choice(parts)
        cache = self._partitions
        found = cache.get((key, len(parts)))
        if found is None:
            if len(cache) >= 50_000:
                cache.clear()  # bounded: sessions come and go
            found = cache[(key, len(parts))] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return found

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """To the local file (always), then a copy to router.dlq (best effort: the file has it all)."""
        for letter in letters:
            self.dead.write(letter)
            log.error("dead letter: a %d-byte event for %s was refused (%s); kept in %s",
                      len(letter.value), letter.topic, letter.reason, self.dead.path)
        producer = self._producer
        if producer is None:
            return
        try:
            async with asyncio.timeout(self.send_timeout_s):
                futures = []
                for letter in letters:
                    value, headers = carried(letter)
                    futures.append(await producer.send(self.topics.dlq, value, key=letter.key, headers=headers))
                await asyncio.gather(*futures)
        except Exception as exc:
            log.warning("router.dlq did not take %d dead letters (%s); they are in %s", len(letters), exc,
                        self.dead.path)

    async def _connect(self) -> bool:
        """Topics (re-created if the broker lost them) and a fresh producer; False while unreachable."""
        await self._close_producer()
        try:
            async with asyncio.timeout(max(self.send_timeout_s, 5.0)):
                created = await ensure(self.bootstrap_servers, self.topics, self.partitions, self.replication)
                producer, self.idempotent = await start_producer(
                    lambda idempotent: AIOKafkaProducer(
                        bootstrap_servers=self.bootstrap_servers,
                        acks="all",
                        linger_ms=5,
                        enable_idempotence=idempotent,
                        request_timeout_ms=int(self.send_timeout_s * 1000),
                        retry_backoff_ms=100,
                        max_batch_size=1 if self.single_record_batches else _BATCH_BYTES,
                    ),
                    self.bootstrap_servers, idempotent=not self.embedded)
        except Exception as exc:
            self.last_error = f"connect: {type(exc).__name__}: {exc}"
            self._down = True
            return False
        self._producer = producer
        ours = {self.topics.decisions, self.topics.traces, self.topics.outcomes}
        if self._connected_once and self._recent and (ours & set(created) or await self._log_shrank()):
            # The broker came back empty: what it had acknowledged but nobody consumed yet is gone.
            log.warning("broker lost its topics; re-sending the last %d acknowledged events", len(self._recent))
            self._acked.clear()
            self._resend = list(self._recent) + self._resend
            self._recent.clear()
        self._connected_once = True
        if self._down:
            log.info("broker reachable at %s", self.bootstrap_servers)
        self._down = False
        return True

    async def _log_shrank(self) -> bool:
        """Did the broker come back with a shorter log than it acknowledged to us (restarted empty)?
        When it cannot tell, say yes: re-sent events are deduplicated by event_id downstream."""
        tps = [TopicPartition(t, p) for t, p in self._acked]
        if not tps:
            return False
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                    request_timeout_ms=int(max(self.send_timeout_s, 5.0) * 1000))
        try:
            async with asyncio.timeout(max(self.send_timeout_s, 5.0)):
                await consumer.start()
                ends = await consumer.end_offsets(tps)
        except Exception as exc:
            log.warning("cannot read the broker's log end offsets (%s); re-sending recent events", exc)
            return True
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        shrank = [tp for tp in tps if ends.get(tp, 0) <= self._acked[(tp.topic, tp.partition)]]
        if shrank:
            self._acked.clear()  # the new log's offsets start over
        return bool(shrank)

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), 2.0)
        except Exception:  # a producer of a dead broker may not stop cleanly; drop it
            log.debug("producer did not stop cleanly", exc_info=True)


class Ack(NamedTuple):
    """Where the broker put one event."""

    topic: str
    partition: int
    offset: int


def _outcome(r: Any, timeout: BaseException) -> Any:
    """What a send came to when the produce timed out: its ack or error, else the timeout (unconfirmed:
    it is sent again later, and consumers deduplicate by event id)."""
    return r if isinstance(r, Ack | BaseException) else timeout
