"""The topic names one deployment uses: the standard ``router.*`` names, optionally under a prefix.

A prefix gives several deployments (or test runs) one broker without seeing each other's events.
Topics are created up front with explicit partition counts (the policy topic compacted, one partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, fields

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.events import names

# Largest event our producers send: a policy snapshot grows with the catalogue (~1.1 MB for 24 models,
# over Kafka's 1 MB default), so the policy topic and the agents' producer allow this much.
MAX_EVENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Topics:
    requests: str = names.REQUESTS
    responses: str = names.RESPONSES
    decisions: str = names.DECISIONS
    outcomes: str = names.OUTCOMES
    traces: str = names.TRACES
    policy: str = names.POLICY
    dlq: str = names.DLQ

    @classmethod
    def prefixed(cls, prefix: str) -> Topics:
        base = cls()
        return cls(**{f.name: prefix + getattr(base, f.name) for f in fields(cls)})

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    def specs(self, partitions: int) -> list[names.TopicSpec]:
        out = []
        for f in fields(self):
            if f.name == "policy":
                out.append(names.TopicSpec(self.policy, 1, compacted=True))
            elif f.name == "dlq":
                out.append(names.TopicSpec(self.dlq, 1))
            else:
                out.append(names.TopicSpec(getattr(self, f.name), partitions))
        return out


async def ensure(bootstrap_servers: str, topics: Topics, partitions: int, replication: int = 1,
                 *, timeout_s: float = 15.0) -> list[str]:
    """Create the missing topics of ``topics``; return the names created."""
    async with asyncio.timeout(timeout_s):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [s for s in topics.specs(partitions) if s.name not in existing]
            if not missing:
                return []
            new = [
                NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication,
                         topic_configs={"cleanup.policy": "compact", "max.message.bytes": str(MAX_EVENT_BYTES)}
                         if s.compacted else {})
                for s in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(new)
            return [s.name for s in missing]
        finally:
            await admin.close()
