"""What the broker grants, found out by asking it, not assumed from "embedded or not".

An idempotent producer needs the broker to hand out a producer id (InitProducerId). Apache Kafka does;
Tansu answers with an error, wherever it runs (the embedded child or one started by hand). Producers
ask for idempotence and, when the broker refuses it, fall back to a plain producer with one log line:
delivery is then at-least-once, which every consumer here absorbs (deduplication by event id).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

log = logging.getLogger("weave.broker")


async def start_producer(make: Callable[[bool], AIOKafkaProducer], bootstrap_servers: str, *,
                         idempotent: bool = True) -> tuple[AIOKafkaProducer, bool]:
    """A started producer from ``make(enable_idempotence)``, and whether it is idempotent."""
    if idempotent:
        producer = make(True)
        try:
            await producer.start()
            return producer, True
        except KafkaConnectionError:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        except KafkaError as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            log.warning("broker at %s does not grant idempotent producers (InitProducerId: %s); "
                        "producing at-least-once, consumers deduplicate by event id",
                        bootstrap_servers, type(exc).__name__)
    producer = make(False)
    await producer.start()
    return producer, False
