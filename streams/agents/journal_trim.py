"""Trimming the emitter's journal: a segment goes once the sink group has committed all its events.

The sink commits an event's offset only after ClickHouse has it, so the sink group's committed
offsets say which journal segments a crash can no longer need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.agents.journal import Journal, Offsets

log = logging.getLogger("weave.emitter")


class CommittedOffsets:
    """A member of ``group`` that never subscribes: it only reads the group's committed offsets.

    Opened on first use and kept; ``close`` it after a failure so the next read starts afresh."""

    def __init__(self, bootstrap_servers: str, group: str, *, timeout_s: float = 5.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group = group
        self.timeout_s = timeout_s
        self._reader: AIOKafkaConsumer | None = None

    async def read(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """The committed offset per (topic, partition); None where the group committed nothing."""
        committed: dict[tuple[str, int], int | None] = {}
        if not partitions:
            return committed
        reader = self._reader
        if reader is None:
            reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=self.group,
                                      enable_auto_commit=False, request_timeout_ms=int(self.timeout_s * 1000))
            async with asyncio.timeout(self.timeout_s):
                await reader.start()
            self._reader = reader
        async with asyncio.timeout(self.timeout_s):
            for topic, partition in partitions:
                committed[(topic, partition)] = await reader.committed(TopicPartition(topic, partition))
        return committed

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.stop(), 2.0)


class JournalTrimmer:
    """Deletes ``journal`` segments whose events ``stored`` (the sink group) committed, every
    ``interval_s``; ``acked`` is the live map of the highest offset the broker acknowledged."""

    def __init__(self, journal: Journal, acked: Offsets, stored: CommittedOffsets, interval_s: float) -> None:
        self.journal = journal
        self.acked = acked
        self.stored = stored
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.trim()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("journal trim failed: %s", exc)
                await self.stored.close()

    async def trim(self) -> int:
        """Delete the segments the sink group has committed; how many went."""
        journal = self.journal
        journal.acknowledge(0, self.acked)
        if not journal.removable():
            return 0
        return journal.trim(await self.stored.read(journal.awaiting()))

    async def final(self, timeout_s: float = 3.0) -> None:
        """After the sink stopped (it commits what it stored): trim once more, so a clean restart does
        not send again what is already stored. Best effort."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.trim(), timeout_s)
        await self.stored.close()
