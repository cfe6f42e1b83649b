"""Dead letters on router.dlq: the original bytes and key, with where they came from and why in headers.

Keeping the value byte-for-byte (instead of wrapping it) lets an operator re-publish a fixed event to
its topic unchanged; the headers are plain UTF-8 so any Kafka tool shows the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
    stage: str  # decode | store | encode | handle
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
