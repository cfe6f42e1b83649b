"""The event-stream side of the router: Faust agents, the sink, the gateway's producer and feedback.

- ``worker.Worker``: a Faust app with the router agent (``router``) and/or the learner agent
  (``learner``), plus the policy follower that hot-swaps the router's learned policy; ``app.BatchApp``
  the lighter engine with the same agents.
- ``sink.SinkAgent``: traces, decisions and outcomes into ClickHouse (batched, idempotent).
- ``emitter.KafkaEventSink``: the gateway's non-blocking event producer: the journal (``journal``,
  trimmed by ``journal_trim``), the spill file when the broker is away (``spill``), record batches
  (``record_batches``), re-sending what a restarted broker lost (``acknowledged``), dead letters
  (``dlq``).
- ``route_agent.RouteHandler``: RouteRequests through the gateway's serving core (``streams.ingress.core``).
- ``policy_snapshots.PolicyFollower``: newest merged policy for any process that decides (gateway included).
- ``feedback.build_outcome``: ``POST /v1/feedback`` payload → Outcome event.
- ``service.start_streams``: all of the above for one process, as ``weave-router up`` runs them.

The emitter implements the gateway's ``EventSink`` protocol structurally; only the router agent
imports ``streams.ingress`` (the one serving core for HTTP and Kafka requests).
"""

from __future__ import annotations

from streams.agents.app import BatchApp, Event, Poison, make_faust_app
from streams.agents.dlq import DeadLetter, DeadLetterFile
from streams.agents.emitter import KafkaEventSink
from streams.agents.feedback import build_outcome
from streams.agents.journal import Journal
from streams.agents.learner import Learner, OutcomeJoiner
from streams.agents.policy_snapshots import PolicyFollower, PolicyView, base_bandit, snapshot_event
from streams.agents.publisher import Publisher
from streams.agents.records import conform, decision_event, now_ms
from streams.agents.route_agent import RouteHandler
from streams.agents.service import StreamServices, start_streams
from streams.agents.sink import SinkAgent
from streams.agents.spill import SpillFile
from streams.agents.topics import Topics, ensure
from streams.agents.worker import Worker

__all__ = [
    "BatchApp",
    "DeadLetter",
    "DeadLetterFile",
    "Event",
    "Journal",
    "KafkaEventSink",
    "Learner",
    "OutcomeJoiner",
    "Poison",
    "PolicyFollower",
    "PolicyView",
    "Publisher",
    "RouteHandler",
    "SinkAgent",
    "SpillFile",
    "StreamServices",
    "Topics",
    "Worker",
    "base_bandit",
    "build_outcome",
    "conform",
    "decision_event",
    "ensure",
    "make_faust_app",
    "now_ms",
    "snapshot_event",
    "start_streams",
]
