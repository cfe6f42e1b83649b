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
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.agents.acknowledged import AcknowledgedLog
from streams.agents.dlq import DeadLetterFile, deliver
from streams.agents.journal import Journal
from streams.agents.journal_trim import CommittedOffsets, JournalTrimmer
from streams.agents.record_batches import RecordBatchSender, refusals, settled, unconfirmed_from
from streams.agents.records import conform, decision_event, encode_event
from streams.agents.spill import Item, SpillFile
from streams.agents.topics import Topics, ensure
from streams.config import Settings
from streams.events.codec import EventCodec
from streams.infra.capabilities import start_producer
from streams.routing.decision import Decision

log = logging.getLogger("weave.emitter")

_DECISION = 0
_RECORD = 1
# The sink's consumer group (streams.agents.sink.SINK_GROUP): its commits say what is in ClickHouse.
STORED_BY_GROUP = "weave-sink"


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
        # The last events the broker acknowledged and the highest offset per partition: a broker that
        # comes back without them (streams.agents.acknowledged) gets them again. 0 disables.
        self._acks = AcknowledgedLog(replay_window)
        self._resend: list[Item] = []
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
        self._sender = RecordBatchSender(single_record_batches=single_record_batches)
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
        self._trimmer = JournalTrimmer(
            self.journal, self._acks.offsets,
            CommittedOffsets(bootstrap_servers, sink_group, timeout_s=max(send_timeout_s, 5.0)), trim_interval_s,
        ) if self.journal is not None else None
        self._recovered = False
        self._buffer: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._released = asyncio.Event()  # cleared while ``held``
        self._released.set()
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
            if self._trimmer is not None:
                self._trim_task = asyncio.create_task(self._trimmer.run(), name="weave-journal-trim")

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
        if self._trimmer is not None:
            await self._trimmer.stored.close()
        if self.journal is not None:
            self.journal.close()

    async def __aenter__(self) -> KafkaEventSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- background -----------------------------------------------------------------------------

    _inflight = False

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """No producing inside the block (events queue in the buffer; the journal has them, so the
        request path never waits); it starts once the produce in flight, if any, has finished."""
        self._released.clear()
        try:
            while self._inflight:
                await asyncio.sleep(0.005)
            yield
        finally:
            self._released.set()
            self._wake.set()

    async def broker_replaced(self) -> None:
        """Inside ``held``: the broker was started afresh after everything it acknowledged had been
        read and stored, so nothing is re-sent; connect to the new one (and re-create the topics)."""
        self._acks.take_lost()
        if self.journal is not None:
            self.journal.broker_replaced()
        await self._connect()

    async def _run(self) -> None:
        while True:
            if not self._released.is_set() and not self._stopping:
                await self._released.wait()
                continue
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
        failed_from = await self._produce(items)
        self._acknowledged(len(items) if failed_from is None else failed_from)
        if failed_from is not None:
            # Keep order: the unconfirmed tail, then the whole buffer, go to the file.
            self.spill.append_many(items[failed_from:])
            self._down = True

    async def _send_resend(self) -> None:
        items, self._resend = self._resend, []
        failed_from = await self._produce(items)
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
        failed_from = await self._produce(items)
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
            key, data = encode_event(self.codec, name, value)
            return topic, key, data
        except Exception as exc:  # a malformed event must not fail the request that produced it
            self.encode_failures += 1
            self.last_error = f"cannot encode {name}: {type(exc).__name__}: {exc}"
            log.warning("dropping an event that cannot be encoded as %s: %s", name, exc)
            return None

    # --- the journal ------------------------------------------------------------------------------

    def _acknowledged(self, count: int) -> None:
        """``count`` more events, in accepted order, reached the broker for the first time."""
        if self.journal is not None and count:
            self.journal.acknowledge(count, self._acks.offsets)

    async def trim_journal(self) -> int:
        """Delete the journal segments whose events the sink group has committed; how many went."""
        return await self._trimmer.trim() if self._trimmer is not None else 0

    async def final_trim(self, timeout_s: float = 3.0) -> None:
        """After the sink stopped: trim once more (see ``JournalTrimmer.final``)."""
        if self._trimmer is not None:
            await self._trimmer.final(timeout_s)

    async def _produce(self, items: list[Item]) -> int | None:
        """Send ``items``; None when all are acknowledged, else the index of the first unconfirmed one.
        An item refused for good (too large, invalid) is dead-lettered and counts as done."""
        producer = self._producer
        if producer is None:
            return 0
        results: list[Any] = [None] * len(items)
        self._inflight = True
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await self._sender.send(producer, items, results)
        except Exception as exc:
            self.last_error = f"produce: {type(exc).__name__}: {exc}"
            log.warning("broker unreachable (%s); spilling events to %s", self.last_error, self.spill.path)
            results = [settled(r, exc) for r in results]
        finally:
            self._inflight = False
        failed_from = unconfirmed_from(results)
        done = len(items) if failed_from is None else failed_from
        if failed_from is not None and isinstance(results[failed_from], BaseException) and not self.last_error:
            self.last_error = f"produce: {type(results[failed_from]).__name__}: {results[failed_from]}"
        letters = refusals(items[:done], results[:done])
        self.sent += done - len(letters)
        self._acks.record(items[:done], results[:done])
        if letters:
            await deliver(letters, self.dead, producer, self.topics.dlq, self.send_timeout_s)
        if failed_from is not None:
            await self._close_producer()
        return failed_from

    async def _connect(self) -> bool:
        """Topics (re-created if the broker lost them) and a fresh producer; False while unreachable."""
        await self._close_producer()
        try:
            async with asyncio.timeout(max(self.send_timeout_s, 5.0)):
                created = await ensure(self.bootstrap_servers, self.topics, self.partitions, self.replication)
                producer, self.idempotent = await start_producer(
                    lambda idempotent: self._sender.producer(self.bootstrap_servers, self.send_timeout_s, idempotent),
                    self.bootstrap_servers, idempotent=not self.embedded)
        except Exception as exc:
            self.last_error = f"connect: {type(exc).__name__}: {exc}"
            self._down = True
            return False
        self._producer = producer
        ours = {self.topics.decisions, self.topics.traces, self.topics.outcomes}
        if self._connected_once and self._acks.recent and (
                ours & set(created) or await self._acks.log_shrank(self.bootstrap_servers, max(self.send_timeout_s, 5.0))):
            # The broker came back empty: what it had acknowledged but nobody consumed yet is gone.
            lost = self._acks.take_lost()
            log.warning("broker lost its topics; re-sending the last %d acknowledged events", len(lost))
            self._resend = lost + self._resend
        self._connected_once = True
        if self._down:
            log.info("broker reachable at %s", self.bootstrap_servers)
        self._down = False
        return True

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), 2.0)
        except Exception:  # a producer of a dead broker may not stop cleanly; drop it
            log.debug("producer did not stop cleanly", exc_info=True)

