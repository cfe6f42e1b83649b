"""Topic names and their partition counts; created up front, keyed by session id."""

from __future__ import annotations

from dataclasses import dataclass

REQUESTS = "router.requests"
RESPONSES = "router.responses"
DECISIONS = "router.decisions"
OUTCOMES = "router.outcomes"
TRACES = "router.traces"
POLICY = "router.policy"
DLQ = "router.dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


def topic_specs(partitions: int) -> list[TopicSpec]:
    """Every topic the service uses; the policy topic is compacted and single-partition (one ordered log)."""
    return [
        TopicSpec(REQUESTS, partitions),
        TopicSpec(RESPONSES, partitions),
        TopicSpec(DECISIONS, partitions),
        TopicSpec(OUTCOMES, partitions),
        TopicSpec(TRACES, partitions),
        TopicSpec(POLICY, 1, compacted=True),
        TopicSpec(DLQ, 1),
    ]
