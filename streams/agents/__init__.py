"""The event-stream side of the router: Faust agents, the sink, the gateway's producer and feedback.

- ``worker.Worker``: a Faust app with the router agent (``router``) and/or the learner agent
  (``learner``), plus the policy follower that hot-swaps the router's learned policy.
- ``sink.SinkAgent``: traces, decisions and outcomes into ClickHouse (batched, idempotent).
- ``emitter.KafkaEventSink``: the gateway's non-blocking event producer (spills to disk when the
  broker is away).
- ``route_agent.RouteHandler``: RouteRequests through the gateway's serving core (``streams.ingress.core``).
- ``policy_snapshots.PolicyFollower``: newest merged policy for any process that decides (gateway included).
- ``feedback.build_outcome``: ``POST /v1/feedback`` payload → Outcome event.

The emitter implements the gateway's ``EventSink`` protocol structurally; only the router agent
imports ``streams.ingress`` (the one serving core for HTTP and Kafka requests).
"""
