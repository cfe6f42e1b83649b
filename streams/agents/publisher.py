"""The agents' output producer: one batching aiokafka producer per worker, deliveries awaited per
input batch (at-least-once), dead letters to router.dlq."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.agents.dlq import DeadLetter
from streams.agents.topics import MAX_EVENT_BYTES, Topics
from streams.events.codec import EventCodec
from streams.infra.capabilities import start_producer

log = logging.getLogger("weave.publisher")


@dataclass(slots=True)
class Outputs:
    """What one request produces: (topic, key, record name, value) in publish order."""

    events: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def add(self, topic: str, key: str, name: str, value: dict[str, Any]) -> None:
        self.events.append((topic, key, name, value))


AUTO_MODEL = "router/auto"

class Publisher:
    """The agents' output producer: a batching aiokafka producer, delivery awaited per input batch.

    Faust's own ``topic.send`` costs ~0.4 ms per message here (its buffer, sensors and per-message
    futures); the agents instead process a batch of input events, hand every output to this producer
    without waiting, and await all deliveries before the batch is acknowledged (so offsets are
    committed only for inputs whose outputs reached the broker: at-least-once).
    """

    def __init__(self, bootstrap_servers: str, codec: EventCodec, topics: Topics, *, embedded: bool = False,
                 linger_ms: int = 2) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.topics = topics
        self.embedded = embedded
        self.linger_ms = linger_ms
        self.producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()  # what AIOKafkaProducer.send uses by default
        self._partitions: dict[tuple[str, bytes], int] = {}  # (topic, key) -> partition

    async def start(self) -> None:
        if self.producer is None:
            self.producer, _ = await start_producer(
                lambda idempotent: AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=self.linger_ms,
                    enable_idempotence=idempotent, max_batch_size=256 * 1024,
                    # Policy snapshots grow with the catalogue (~1.1 MB for 24 models): above the 1 MB default.
                    max_request_size=MAX_EVENT_BYTES,
                ),
                self.bootstrap_servers, idempotent=not self.embedded)

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def send(self, topic: str, key: str | bytes | None, name: str, value: dict[str, Any]
                   ) -> asyncio.Future[Any]:
        """Queue one event; the returned future resolves when the broker has it."""
        assert self.producer is not None, "Publisher.start() first"
        k = key.encode() if isinstance(key, str) else key
        return await self.producer.send(topic, self.codec.encode(name, value), key=k or None)

    async def queue(self, outputs: Outputs) -> list[asyncio.Future[Any]]:
        return [await self.send(topic, key, name, value) for topic, key, name, value in outputs.events]

    async def queue_many(self, batch: list[Outputs]) -> list[asyncio.Future[Any]]:
        """Queue every output of a batch of requests: one record batch per (topic, partition).

        ``producer.send`` costs ~15 µs of Python per message (partitioner, accumulator, a future
        each); here the records are appended to one builder per partition and handed over with one
        ``send_batch`` each. Records land on the partitions ``send`` would pick (aiokafka's default
        partitioner on the same key), in input order within each partition.
        """
        assert self.producer is not None, "Publisher.start() first"
        producer = self.producer
        encode = self.codec.encode
        partitions: dict[str, list[int]] = {}
        builders: dict[tuple[str, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        for outputs in batch:
            for topic, key, name, value in outputs.events:
                k = (key.encode() if isinstance(key, str) else key) or None
                parts = partitions.get(topic)
                if parts is None:
                    parts = partitions[topic] = list(await producer.partitions_for(topic))
                p = self._partition(topic, k, parts)
                v = encode(name, value)
                builder = builders.get((topic, p))
                if builder is None:
                    builder = builders[(topic, p)] = producer.create_batch()
                if builder.append(key=k, value=v, timestamp=None) is None:  # full: send it, start another
                    futures.append(await producer.send_batch(builder, topic, partition=p))
                    builder = builders[(topic, p)] = producer.create_batch()
                    if builder.append(key=k, value=v, timestamp=None) is None:
                        futures.append(await producer.send(topic, v, key=k, partition=p))  # larger than a batch
                        del builders[(topic, p)]
        for (topic, p), builder in builders.items():
            futures.append(await producer.send_batch(builder, topic, partition=p))
        return futures

    def _partition(self, topic: str, key: bytes | None, parts: list[int]) -> int:
        if key is None:
            return int(self._partitioner(None, parts, parts))
        cache = self._partitions
        p = cache.get((topic, key))
        if p is None:
            if len(cache) > 100_000:
                cache.clear()
            p = cache[(topic, key)] = self._partitioner(key, parts, parts)
        return int(p)

    async def publish(self, outputs: Outputs) -> None:
        await asyncio.gather(*await self.queue(outputs))

    async def dead_letter(self, event: Any, reason: str, stage: str) -> asyncio.Future[Any]:
        assert self.producer is not None, "Publisher.start() first"
        msg = getattr(event, "message", event)  # a Faust event, or an aiokafka record
        raw = msg.value if isinstance(msg.value, bytes) else b""
        letter = DeadLetter(msg.topic, msg.partition, msg.offset, reason, stage, msg.key, raw)
        log.warning("dead letter from %s/%s@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        return await self.producer.send(self.topics.dlq, raw, key=msg.key, headers=letter.headers())
