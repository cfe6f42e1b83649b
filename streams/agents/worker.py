"""One stream worker: the router and/or learner agents on one consumer group, with its policy follower.

The agents run as Faust agents (``engine="faust"``, the default of ``kafka.agent_engine``) or on
``streams.agents.app.BatchApp`` (``engine="batch"``: whole fetches per step, ~3x the throughput, since
Faust's per-event stream is the cap).

Programmatic use (``weave-router worker`` / ``up`` wire this)::

    worker = Worker(settings, bootstrap_servers, embedded=True, worker_id="w1", sim_url=sim_url)
    await worker.start()          # topics ensured, newest policy loaded, agents consuming
    ...
    await worker.stop()

Several workers (processes, or apps in one process) with the same ``app_id`` form one consumer group
and split the partitions; every worker's router follows the merged policy of all learners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.agents.app import DEFAULT_APP_ID, BatchApp, BatchHandler, make_faust_app
from streams.agents.learner import Learner, attach_learner, learner_tick, queue_learn_batch
from streams.agents.policy_snapshots import POLICY_NAME, PolicyFollower, PolicyView, base_bandit
from streams.agents.policy_store import load_partial
from streams.agents.publisher import Publisher
from streams.agents.route_agent import RouteHandler, attach_router, queue_route_batch
from streams.agents.topics import Topics, ensure
from streams.config import Settings
from streams.events.codec import DecodeError, EventCodec
from streams.providers.client import UpstreamClient
from streams.routing.bandit import ContextualBandit

log = logging.getLogger("weave.worker")

ROLES = frozenset({"router", "learner"})
# "batch": the agents on one aiokafka consumer group read whole fetches (``BatchApp``, the default:
# Faust's per-event stream caps at ~3,800 events/s here, see its docstring); "faust": the same agents
# as Faust agents with ``take_events`` batching.
ENGINES = frozenset({"batch", "faust"})


async def read_partial(bootstrap_servers: str, topics: Topics, learner_id: str, *, policy: str = POLICY_NAME,
                       codec: EventCodec | None = None, timeout_s: float = 10.0) -> tuple[bytes, int, int] | None:
    """This learner's newest published partial (state, updates, version), to resume learning after a
    restart."""
    codec = codec or EventCodec()
    tp = TopicPartition(topics.policy, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=200)
    await consumer.start()
    found: dict[str, Any] | None = None
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    try:
                        name, event = codec.decode(r.value)
                    except DecodeError:
                        continue
                    if (name == "PolicySnapshot" and event.get("policy") == policy
                            and event.get("learner_id") == learner_id
                            and (found is None or event["version"] > found["version"])):
                        found = event
            if not batch and await consumer.position(tp) >= end:
                break
    finally:
        await consumer.stop()
    return (bytes(found["state"]), int(found.get("updates") or 0), int(found["version"])) if found else None


class Worker:
    """Router and learner agents in one consumer group (``BatchApp`` or a Faust app); see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        bootstrap_servers: str,
        *,
        embedded: bool,
        worker_id: str,
        roles: Iterable[str] = ("router", "learner"),
        topics: Topics | None = None,
        app_id: str = DEFAULT_APP_ID,
        router: Any = None,
        upstream: UpstreamClient | None = None,
        sim_url: str | None = None,
        batch_max: int = 500,
        publish_every_s: float = 2.0,
        publish_after: int = 500,
        engine: str | None = None,
        **faust_overrides: Any,
    ) -> None:
        self.roles = frozenset(roles)
        unknown = self.roles - ROLES
        if unknown:
            raise ValueError(f"unknown worker roles: {', '.join(sorted(unknown))}")
        engine = engine or settings.kafka.agent_engine
        if engine not in ENGINES:
            raise ValueError(f"unknown worker engine {engine!r} (batch or faust)")
        self.engine = engine
        if engine == "batch" and faust_overrides:
            log.warning("Faust settings %s are ignored by the batch engine", ", ".join(sorted(faust_overrides)))
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.embedded = embedded
        self.worker_id = worker_id
        self.topics = topics or Topics()
        self.app_id = app_id
        self.codec = EventCodec()
        self.batch_max = batch_max
        self.publisher: Publisher | None = None
        self.publish_every_s = publish_every_s
        self.publish_after = publish_after
        self.faust_overrides = faust_overrides
        self._router = router
        self._own_upstream = upstream is None
        self.upstream = upstream or UpstreamClient(sim_url)
        self.app: faust.App | BatchApp | None = None
        self.handler: RouteHandler | None = None
        self.learner: Learner | None = None
        self.follower: PolicyFollower | None = None

    @property
    def router(self) -> Any:
        if self._router is None:
            from streams.routing.router import Router

            self._router = Router(self.settings)
        return self._router

    async def start(self) -> None:
        await ensure(self.bootstrap_servers, self.topics, self.settings.kafka.partitions,
                     self.settings.kafka.replication_factor)
        publisher = self.publisher = Publisher(self.bootstrap_servers, self.codec, self.topics, embedded=self.embedded)
        await publisher.start()
        if "router" in self.roles:
            await self.upstream.start()
            self.follower = PolicyFollower.for_router(self.settings, self.bootstrap_servers, self.router,
                                                      topics=self.topics)
            await self.follower.start()  # the newest policy before the first request
            self.handler = RouteHandler(self.settings, self.router, self.upstream, self.topics)
        if "learner" in self.roles:
            bandit: ContextualBandit | None = None
            updates = 0
            previous = await read_partial(self.bootstrap_servers, self.topics, self.worker_id, codec=self.codec)
            local = load_partial(self.settings.data_dir, self.topics.policy, POLICY_NAME, self.worker_id, self.codec)
            from_disk = local is not None and (previous is None or int(local["version"]) > previous[2])
            if from_disk:
                assert local is not None
                previous = (bytes(local["state"]), int(local.get("updates") or 0), int(local["version"]))
                log.info("learner %s resumes from its local snapshot (version %s)", self.worker_id, local["version"])
            if previous is not None:
                bandit, updates = ContextualBandit.restore(previous[0]), previous[1]
            on_outcome = self._on_outcome if "router" in self.roles else None
            self.learner = Learner(self.settings, self.worker_id, bandit=bandit, publish_every_s=self.publish_every_s,
                                   publish_after=self.publish_after, on_outcome=on_outcome)
            self.learner.updates = updates
            if from_disk:
                self.learner.republish()  # the broker does not have it: followers get it from us
        app = self._faust_app(publisher) if self.engine == "faust" else self._batch_app(publisher)
        self.app = app
        await app.start()

    def _faust_app(self, publisher: Publisher) -> faust.App:
        app = make_faust_app(self.settings, self.bootstrap_servers, self.embedded, self.worker_id,
                             app_id=self.app_id, **self.faust_overrides)
        if self.handler is not None:
            attach_router(app, self.handler, publisher, batch_max=self.batch_max)
        if self.learner is not None:
            attach_learner(app, self.learner, publisher)
        return app

    def _batch_app(self, publisher: Publisher) -> BatchApp:
        handlers: dict[str, BatchHandler] = {}
        on_tick = None
        handler, learner = self.handler, self.learner
        if handler is not None:
            async def route(batch: list[tuple[Any, Any]]) -> list[asyncio.Future[Any]]:
                return await queue_route_batch(handler, publisher, batch)

            handlers[self.topics.requests] = route
        if learner is not None:
            async def learn(batch: list[tuple[Any, Any]]) -> list[asyncio.Future[Any]]:
                return await queue_learn_batch(learner, publisher, batch)

            async def tick() -> None:
                await learner_tick(learner, publisher)

            for topic in (self.topics.decisions, self.topics.traces, self.topics.outcomes):
                handlers[topic] = learn
            on_tick = tick
        return BatchApp(self.bootstrap_servers, self.app_id, handlers, embedded=self.embedded,
                        client_id=f"weave-worker-{self.worker_id}", max_records=max(self.batch_max, 1000),
                        on_tick=on_tick, event_codec=self.codec)

    def _on_outcome(self, session_id: str, success: float) -> None:
        # The cascade: a failed outcome lets this session's next request escalate (same partition owner).
        with contextlib.suppress(Exception):
            self.router.record_outcome(session_id, success >= 0.5)

    async def ready(self, timeout_s: float = 30.0) -> bool:
        """True once the app holds partitions and no rebalance is in progress."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            app = self.app
            if app is not None and not app.rebalancing and self.assignment():
                return True
            await asyncio.sleep(0.05)
        return False

    def assignment(self) -> set[Any]:
        app = self.app
        if isinstance(app, BatchApp):
            return app.assignment()
        return set(app.consumer.assignment()) if app is not None else set()

    async def stop(self) -> None:
        if self.app is not None:
            with contextlib.suppress(Exception):
                await self.app.stop()
            self.app = None
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        if self.follower is not None:
            await self.follower.stop()
            self.follower = None
        if self._own_upstream:
            with contextlib.suppress(Exception):
                await self.upstream.close()

    def merged_policy(self) -> ContextualBandit | None:
        """The policy this worker's router uses now (None before any snapshot)."""
        return getattr(self._router, "bandit", None)


def merged_from_view(settings: Settings, events: Iterable[dict[str, Any]]) -> ContextualBandit:
    """Merge PolicySnapshot events the way every follower does (tests, reports)."""
    view = PolicyView(lambda: base_bandit(settings))
    for e in events:
        view.offer(e)
    return view.merged()
