"""Where the gateway hands its decisions and traces: a sync, non-blocking sink.

The request path never waits on Kafka or ClickHouse: an ``EventSink`` only enqueues (the Kafka-backed
one produces in the background). ``NullEventSink`` drops everything; ``MemoryEventSink`` keeps a bounded
list for tests and the embedded demo.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol, runtime_checkable

from streams.routing.decision import Decision


@runtime_checkable
class EventSink(Protocol):
    def emit_decision(self, decision: Decision, **context: Any) -> None:
        """One routing decision; ``context`` carries request_id, client_dialect, requested_model, source."""

    def emit_trace(self, trace: dict[str, Any]) -> None:
        """One finished request (see ``streams.ingress.trace`` for the fields)."""


class NullEventSink:
    def emit_decision(self, decision: Decision, **context: Any) -> None:
        return None

    def emit_trace(self, trace: dict[str, Any]) -> None:
        return None


class MemoryEventSink:
    """Keeps the last ``maxlen`` decisions and traces in memory."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.decisions: deque[tuple[Decision, dict[str, Any]]] = deque(maxlen=maxlen)
        self.traces: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def emit_decision(self, decision: Decision, **context: Any) -> None:
        self.decisions.append((decision, context))

    def emit_trace(self, trace: dict[str, Any]) -> None:
        self.traces.append(trace)
