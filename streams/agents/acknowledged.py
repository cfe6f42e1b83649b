"""What the broker acknowledged to one producer, kept to notice a broker that came back without it.

The embedded broker keeps its topics in memory only: after a restart it has lost whatever it had
acknowledged but nobody had consumed yet. It also auto-creates unknown topics on any client's
metadata request, so "we had to create our topics again" alone misses a restart; a log that comes
back shorter than the highest offset it acknowledged to us is the reliable sign.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.agents.record_batches import REFUSED, Ack
from streams.agents.spill import Item

log = logging.getLogger("weave.emitter")


class AcknowledgedLog:
    """The last ``window`` acknowledged events (to send again) and the highest offset per partition."""

    def __init__(self, window: int) -> None:
        self.recent: deque[Item] = deque(maxlen=max(window, 0))
        self.offsets: dict[tuple[str, int], int] = {}

    def record(self, items: Iterable[Item], results: Iterable[Any]) -> None:
        """``items`` reached the broker (those refused for good excepted); remember them and where."""
        offsets = self.offsets
        for item, r in zip(items, results, strict=False):
            if isinstance(r, REFUSED):
                continue
            self.recent.append(item)
            if isinstance(r, Ack):
                tp = (r.topic, r.partition)
                if r.offset > offsets.get(tp, -1):
                    offsets[tp] = r.offset

    def take_lost(self) -> list[Item]:
        """The broker lost its log: what it had acknowledged recently, to send again (consumers dedup
        by event id). The new log's offsets start over."""
        lost = list(self.recent)
        self.recent.clear()
        self.offsets.clear()
        return lost

    async def log_shrank(self, bootstrap_servers: str, timeout_s: float) -> bool:
        """Did the broker come back with a shorter log than it acknowledged to us (restarted empty)?
        When it cannot tell, say yes: re-sent events are deduplicated by event_id downstream."""
        tps = [TopicPartition(t, p) for t, p in self.offsets]
        if not tps:
            return False
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                    request_timeout_ms=int(timeout_s * 1000))
        try:
            async with asyncio.timeout(timeout_s):
                await consumer.start()
                ends = await consumer.end_offsets(tps)
        except Exception as exc:
            log.warning("cannot read the broker's log end offsets (%s); re-sending recent events", exc)
            return True
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
        return any(ends.get(tp, 0) <= self.offsets[(tp.topic, tp.partition)] for tp in tps)
