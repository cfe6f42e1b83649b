"""Sending encoded events to the broker as record batches, and reading what each send came to.

``RecordBatchSender.send`` fills ``results`` with one entry per item: an ``Ack`` (where the broker put
it), the exception the broker or producer answered with, or ``None``/a future when the send did not
finish. ``REFUSED`` names the answers that are final (retrying cannot help): the emitter dead-letters
those items and treats every other failure as "broker unreachable".
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import murmur2

from streams.agents.dlq import DeadLetter
from streams.agents.spill import Item

# What the broker (or the producer, before sending) refuses for good: retrying cannot help.
REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidMessageError,
           CorruptRecordException, UnsupportedForMessageFormatError)
# Record batch size of the emitter's producer (Kafka's request limit is 1 MB; our batches stay well under).
BATCH_BYTES = 256 * 1024
# Sessions come and go: the key -> partition cache is cleared when it reaches this size.
_PARTITION_CACHE = 50_000


class Ack(NamedTuple):
    """Where the broker put one event."""

    topic: str
    partition: int
    offset: int


_SETTLED = (Ack, *REFUSED)  # a send that needs no retry: acknowledged, or refused for good


def unconfirmed_from(results: list[Any]) -> int | None:
    """The index of the first send neither acknowledged nor refused for good; None when there is none."""
    for i, r in enumerate(results):
        if not isinstance(r, _SETTLED):
            return i
    return None


def refusals(items: list[Item], results: list[Any]) -> list[DeadLetter]:
    """Dead letters for the items the broker refused for good."""
    return [DeadLetter(topic, -1, -1, f"refused by the broker: {type(r).__name__}: {r}", "produce", key, value)
            for (topic, key, value), r in zip(items, results, strict=True) if isinstance(r, REFUSED)]


def settled(result: Any, timeout: BaseException) -> Any:
    """What a send came to when the produce timed out: its ack or error, else the timeout (unconfirmed:
    it is sent again later, and consumers deduplicate by event id)."""
    return result if isinstance(result, Ack | BaseException) else timeout


class RecordBatchSender:
    """Sends items one record batch per partition (or one ``send`` each, for single-record batches)."""

    def __init__(self, *, single_record_batches: bool = False) -> None:
        self.single_record_batches = single_record_batches
        self._partitions: dict[tuple[bytes, int], int] = {}  # (key, partition count) -> partition

    def producer(self, bootstrap_servers: str, send_timeout_s: float, idempotent: bool) -> AIOKafkaProducer:
        """A producer whose batches suit ``send`` (one record each when asked for single-record batches)."""
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, enable_idempotence=idempotent,
            request_timeout_ms=int(send_timeout_s * 1000), retry_backoff_ms=100,
            max_batch_size=1 if self.single_record_batches else BATCH_BYTES,
        )

    async def send(self, producer: AIOKafkaProducer, items: list[Item], results: list[Any]) -> None:
        if self.single_record_batches:
            await self._send_each(producer, items, range(len(items)), results)
        else:
            await self._send_batches(producer, items, results)

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
            if len(value) > BATCH_BYTES // 2:
                single.append(i)  # over the batch size: ``send`` checks it against the request limit
                continue
            parts = counts.get(topic)
            if parts is None:
                parts = counts[topic] = sorted(await producer.partitions_for(topic))
            groups.setdefault((topic, self.partition_of(key, parts)), []).append(i)
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

    def partition_of(self, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            return random.choice(parts)
        cache = self._partitions
        found = cache.get((key, len(parts)))
        if found is None:
            if len(cache) >= _PARTITION_CACHE:
                cache.clear()
            found = cache[(key, len(parts))] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return found
