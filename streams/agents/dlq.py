"""Dead letters on router.dlq: the original bytes and key, with where they came from and why in headers.

Keeping the value byte-for-byte (instead of wrapping it) lets an operator re-publish a fixed event to
its topic unchanged; the headers are plain UTF-8 so any Kafka tool shows the reason.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("weave.dlq")

REASON = "weave-dlq-reason"
SOURCE_TOPIC = "weave-dlq-topic"
SOURCE_PARTITION = "weave-dlq-partition"
SOURCE_OFFSET = "weave-dlq-offset"
STAGE = "weave-dlq-stage"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    reason: str
    stage: str  # decode | store | encode | handle | produce
    key: bytes | None
    value: bytes

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (REASON, self.reason[:4000].encode()),
            (SOURCE_TOPIC, self.topic.encode()),
            (SOURCE_PARTITION, str(self.partition).encode()),
            (SOURCE_OFFSET, str(self.offset).encode()),
            (STAGE, self.stage.encode()),
        ]


def read_headers(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    """The DLQ headers of a consumed record as text (for tests, tools and the report CLI)."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        if name.startswith("weave-dlq-"):
            out[name] = bytes(value).decode("utf-8", "replace")
    return out


PAYLOAD_LIMIT = 64 * 1024  # bytes of a rejected value carried on router.dlq (the full one stays on disk)
TRUNCATED = "weave-dlq-truncated"


class DeadLetterFile:
    """Events the broker refused for good, as JSON lines (reason, where, the whole value in base64),
    so an operator can see and re-publish them; router.dlq gets a copy with at most ``PAYLOAD_LIMIT``
    bytes of the value."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.written = 0

    def write(self, letter: DeadLetter) -> None:
        line = json.dumps({
            "ts_ms": int(time.time() * 1000), "topic": letter.topic, "stage": letter.stage,
            "reason": letter.reason, "size": len(letter.value),
            "key": letter.key.decode("utf-8", "replace") if letter.key is not None else None,
            "value_b64": base64.b64encode(letter.value).decode(),
        }, separators=(",", ":"))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)
        self.written += 1


def carried(letter: DeadLetter) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of ``letter`` as router.dlq carries it (long values cut, and said so)."""
    headers = letter.headers()
    if len(letter.value) <= PAYLOAD_LIMIT:
        return letter.value, headers
    return letter.value[:PAYLOAD_LIMIT], [*headers, (TRUNCATED, str(len(letter.value)).encode())]


async def deliver(letters: list[DeadLetter], file: DeadLetterFile, producer: Any, dlq_topic: str,
                  timeout_s: float) -> None:
    """Events refused for good at produce time: to the local file (always), then a copy to router.dlq
    with ``producer`` (an AIOKafkaProducer; best effort, the file has them all)."""
    for letter in letters:
        file.write(letter)
        log.error("dead letter: a %d-byte event for %s was refused (%s); kept in %s",
                  len(letter.value), letter.topic, letter.reason, file.path)
    if producer is None:
        return
    try:
        async with asyncio.timeout(timeout_s):
            futures = []
            for letter in letters:
                value, headers = carried(letter)
                futures.append(await producer.send(dlq_topic, value, key=letter.key, headers=headers))
            await asyncio.gather(*futures)
    except Exception as exc:
        log.warning("router.dlq did not take %d dead letters (%s); they are in %s", len(letters), exc, file.path)
