"""Create the service's topics up front with explicit partition counts."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.agents.topics import MAX_EVENT_BYTES
from streams.events.names import TopicSpec, topic_specs


async def ensure_topics(bootstrap_servers: str, partitions: int, replication: int = 1) -> list[str]:
    """Create missing topics; return the names created."""
    specs: list[TopicSpec] = topic_specs(partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=replication,
                # Policy snapshots grow with the catalogue (~1.1 MB for 24 models): above Kafka's 1 MB default.
                topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(MAX_EVENT_BYTES)}
                if s.compacted else {},
            )
            for s in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another worker created them first
            await admin.create_topics(new)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def partition_counts(bootstrap_servers: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([s.name for s in topic_specs(1)])
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()
