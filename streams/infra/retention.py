"""Bounded memory for the embedded broker: start it afresh once every consumer group has read everything.

Tansu 0.6's memory store keeps every record for as long as it runs: compaction never runs, and
DeleteRecords panics on it (measured here), so its resident size grows with traffic (~4.5 KB per
request, ~1.6 GB an hour at 100 req/s). A new broker process frees all of it. The keeper does that
when the broker passes ``kafka.embedded_max_rss_mb`` and nothing it holds is still needed:

1. the gateway's emitter is held (new events wait in its buffer, and are already in its journal:
   the request path never waits);
2. every consumer group of ours has committed up to the log end of each topic it reads, and no
   request arrived on ``router.requests`` for a while (its answers are produced before its commit);
3. the latest policy snapshot per learner is read, the broker restarted on the same port, the
   topics created, the snapshots published again (the policy topic is what followers start from);
4. once every group that had members has rejoined on the new broker (so each consumer starts at the new
   log's beginning rather than at its old position), the emitter connects to the new broker and goes
   on, with nothing to re-send.

When the groups do not catch up within ``settle_s`` the emitter is released and the keeper tries
again at the next check. A broker that exited is started again at once (the emitter then re-sends what
it had acknowledged but nobody had read, as after any broker restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.agents.emitter import KafkaEventSink
from streams.agents.journal_trim import CommittedOffsets
from streams.agents.topics import Topics, ensure
from streams.infra.broker import EmbeddedBroker

log = logging.getLogger("weave.broker")

_MB = 1024 * 1024


@dataclass(slots=True)
class KeeperStats:
    checks: int = 0
    recycles: int = 0
    restarts: int = 0  # after the broker had exited
    deferred: int = 0  # over the limit, but the groups had not read everything within settle_s
    last_rss_mb: float = 0.0
    last_recycle_s: float = 0.0  # how long the emitter was held


class BrokerKeeper:
    """See the module docstring. ``groups``: each consumer group of ours and the topics it reads."""

    def __init__(self, broker: EmbeddedBroker, topics: Topics, groups: Mapping[str, Sequence[str]], *,
                 partitions: int, emitter: KafkaEventSink | None = None, max_rss_mb: float = 256.0,
                 interval_s: float = 10.0, settle_s: float = 20.0, quiet_s: float = 2.0) -> None:
        self.broker = broker
        self.topics = topics
        self.groups = {g: list(ts) for g, ts in groups.items()}
        self.partitions = partitions
        self.emitter = emitter
        self.max_rss_mb = max_rss_mb
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.quiet_s = quiet_s
        self.stats = KeeperStats()
        self._lock = asyncio.Lock()  # one look at a time: a restart under way is not "the broker exited"

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the keeper die: it is what bounds the broker
                log.warning("broker keeper check failed: %s: %s", type(exc).__name__, exc)

    async def check(self) -> str:
        """One look at the broker; what was done: ``ok``, ``restarted``, ``recycled`` or ``deferred``."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> str:
        self.stats.checks += 1
        if not self.broker.alive():
            log.warning("the embedded broker exited; starting it again on %s", self.broker.bootstrap_servers)
            await self._restart()
            self.stats.restarts += 1
            return "restarted"
        rss_mb = self.broker.rss_bytes() / _MB
        self.stats.last_rss_mb = rss_mb
        if self.max_rss_mb <= 0 or rss_mb < self.max_rss_mb:
            return "ok"
        return await self.recycle(rss_mb)

    async def recycle(self, rss_mb: float) -> str:
        held = self.emitter.held() if self.emitter is not None else contextlib.nullcontext()
        t0 = time.monotonic()
        async with held:
            if not await self._everything_read():
                self.stats.deferred += 1
                log.info("embedded broker at %.0f MB, but not everything is read yet; trying later", rss_mb)
                return "deferred"
            if self.emitter is not None:
                await self.emitter.trim_journal()  # while the old offsets still mean something
            snapshots = await self._latest(self.topics.policy)
            active = await self._active_groups()
            await self._restart()
            await self._publish(self.topics.policy, snapshots)
            # A consumer keeps its fetch position across the restart: fetching there before it rejoins
            # would skip what the new log holds below it once the held events arrive. Rejoining a group
            # the new broker has never seen resets it to the log's start, so the events wait until then.
            if not await self._rejoined(active):
                log.warning("consumer groups %s did not rejoin the new broker within %.0f s",
                            sorted(active), self.settle_s)
            if self.emitter is not None:
                await self.emitter.broker_replaced()
        self.stats.recycles += 1
        self.stats.last_recycle_s = time.monotonic() - t0
        log.info("embedded broker started afresh at %.0f MB (now %.0f MB); events held %.2f s, %d policy "
                 "snapshots carried over", rss_mb, self.broker.rss_bytes() / _MB, self.stats.last_recycle_s,
                 len(snapshots))
        return "recycled"

    async def _restart(self, timeout_s: float = 15.0) -> None:
        """A fresh, empty broker on the same port, and our topics on it. The process is forked from the
        loop's thread (see ``EmbeddedBroker.spawn``); the waiting happens off it."""
        await asyncio.to_thread(self.broker.stop)
        deadline = time.monotonic() + timeout_s
        while True:
            self.broker.spawn()
            if await asyncio.to_thread(self.broker.listening, max(1.0, deadline - time.monotonic())):
                break
            await asyncio.to_thread(self.broker.stop)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the embedded broker did not come back on {self.broker.bootstrap_servers}")
            await asyncio.sleep(0.2)  # the old listener's port may take a moment to be free again
        await ensure(self.broker.bootstrap_servers, self.topics, self.partitions)

    # --- what the broker holds ----------------------------------------------------------------------

    async def _everything_read(self) -> bool:
        """Every group committed to every log end, and ``router.requests`` quiet for ``quiet_s``."""
        deadline = time.monotonic() + self.settle_s
        readers = {g: CommittedOffsets(self.broker.bootstrap_servers, g) for g in self.groups}
        try:
            requests_end: int | None = None
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                ends = await self._ends()
                total = sum(off for (t, _), off in ends.items() if t == self.topics.requests)
                if total != requests_end:
                    requests_end, quiet_since = total, time.monotonic()
                if time.monotonic() - quiet_since >= self.quiet_s and await self._all_committed(readers, ends):
                    return True
                await asyncio.sleep(0.2)
            return False
        finally:
            for reader in readers.values():
                await reader.close()

    async def _active_groups(self) -> set[str]:
        """Our groups with members right now (a group nobody runs cannot rejoin)."""
        return {g for g, members in (await self._members()).items() if members}

    async def _rejoined(self, groups: set[str]) -> bool:
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            members = await self._members()
            if all(members.get(g) for g in groups):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _members(self) -> dict[str, int]:
        """Members per group of ours in a stable group (0 while it forms, or when it is not known)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap_servers)
        try:
            async with asyncio.timeout(10.0):
                await admin.start()
                described = await admin.describe_consumer_groups(sorted(self.groups))
        except Exception as exc:  # a broker still starting: nobody has joined yet
            log.debug("describe groups: %s", exc)
            return {}
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        out: dict[str, int] = {}
        for response in described:
            for entry in response.groups:  # (error_code, group, state, protocol_type, protocol, members, ...)
                error_code, group, state, members = entry[0], entry[1], entry[2], entry[5]
                out[group] = len(members) if error_code == 0 and state == "Stable" else 0
        return out

    async def _all_committed(self, readers: Mapping[str, CommittedOffsets],
                             ends: Mapping[tuple[str, int], int]) -> bool:
        for group, topics in self.groups.items():
            wanted = [tp for tp in ends if tp[0] in topics and ends[tp] > 0]
            committed = await readers[group].read(wanted)
            if any((committed.get(tp) or 0) < ends[tp] for tp in wanted):
                return False
        return True

    async def _ends(self) -> dict[tuple[str, int], int]:
        names = sorted({t for ts in self.groups.values() for t in ts} | {self.topics.requests})
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap_servers, group_id=None)
        try:
            async with asyncio.timeout(10.0):
                await consumer.start()
                tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
                ends = await consumer.end_offsets(tps) if tps else {}
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return {(tp.topic, tp.partition): int(off) for tp, off in ends.items()}

    async def _latest(self, topic: str) -> dict[bytes | None, bytes]:
        """The newest record per key of ``topic`` (the policy topic: one snapshot per learner)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, max_partition_fetch_bytes=64 * _MB,
                                    fetch_max_bytes=64 * _MB)
        latest: dict[bytes | None, bytes] = {}
        try:
            async with asyncio.timeout(30.0):
                await consumer.start()
                tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                if not tps:
                    return latest
                consumer.assign(tps)
                ends = await consumer.end_offsets(tps)
                await consumer.seek_to_beginning(*tps)
                while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        for r in records:
                            if r.value is not None:
                                latest[r.key] = r.value
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return latest

    async def _publish(self, topic: str, records: Mapping[bytes | None, bytes]) -> None:
        if not records:
            return
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap_servers, max_batch_size=1,
                                    max_request_size=32 * _MB, acks="all")
        try:
            async with asyncio.timeout(30.0):
                await producer.start()
                for key, value in records.items():
                    await producer.send_and_wait(topic, value, key=key)
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()
