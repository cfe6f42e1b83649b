"""Start the whole event-stream side in one call (what ``weave-router up`` / ``worker`` wire in).

    streams = await start_streams(settings, bootstrap, embedded=True, clickhouse=client,
                                  gateway_router=gateway.router, sim_url=sim_url)
    gateway = Gateway(settings, router, client, events=streams.emitter, health=streams.health)
    ...
    await streams.stop()

Parts (each optional): the gateway's event producer (``emitter``), a policy follower for the gateway's
own router, a Faust worker (router and learner agents) and the sink (needs the ClickHouse client; with
chDB only the process that owns the data dir may run it). Group joins take seconds on the embedded
broker, so the worker and the sink join concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streams.agents.emitter import KafkaEventSink
from streams.agents.policy_snapshots import PolicyFollower
from streams.agents.topics import Topics, ensure
from streams.config import Settings

if TYPE_CHECKING:  # imported where they run: a gateway process needs neither Faust nor the sink
    from streams.agents.sink import SinkAgent
    from streams.agents.worker import Worker


@dataclass
class StreamServices:
    emitter: KafkaEventSink | None = None
    follower: PolicyFollower | None = None
    worker: Worker | None = None
    sink: SinkAgent | None = None
    # The agents and the sink in another process (``up``): stopped after the producers, before the trim.
    apart: Any = None

    def health(self) -> dict[str, str]:
        """Component states in the gateway's health-probe shape (``ok`` or a short reason)."""
        out: dict[str, str] = {}
        if self.emitter is not None:
            out["events"] = self.emitter.health()
        if self.sink is not None:
            out["sink"] = f"degraded: {self.sink.last_error[:120]}" if self.sink.storage_down else "ok"
        if self.worker is not None:
            out["worker"] = "ok" if self.worker.app is not None else "stopped"
        if self.follower is not None:
            out["policy"] = "ok" if not self.follower.last_error else f"degraded: {self.follower.last_error[:120]}"
        return out

    async def stop(self) -> None:
        """Stop in reverse order of the data flow: producers first, the sink last (it drains)."""
        if self.emitter is not None:
            with contextlib.suppress(Exception):
                await self.emitter.stop()
        if self.follower is not None:
            with contextlib.suppress(Exception):
                await self.follower.stop()
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await self.worker.stop()
        if self.sink is not None:
            with contextlib.suppress(Exception):
                await self.sink.stop()
        if self.apart is not None:
            with contextlib.suppress(Exception):
                await self.apart.stop()
        if self.emitter is not None:
            await self.emitter.final_trim()


def consumer_groups(topics: Topics, roles: Iterable[str]) -> dict[str, list[str]]:
    """Each consumer group the agents run, and the topics it reads (``app_id`` is the workers' group)."""
    from streams.agents.app import DEFAULT_APP_ID
    from streams.agents.sink import SINK_GROUP

    roles = set(roles)
    worker = ([topics.requests] if "router" in roles else []) + (
        [topics.decisions, topics.traces, topics.outcomes] if "learner" in roles else [])
    groups = {SINK_GROUP: [topics.traces, topics.decisions, topics.outcomes, topics.dlq]}
    if worker:
        groups[DEFAULT_APP_ID] = worker
    return groups


async def start_streams(
    settings: Settings,
    bootstrap_servers: str,
    *,
    embedded: bool,
    clickhouse: Any = None,
    gateway_router: Any = None,
    sim_url: str | None = None,
    worker_id: str = "worker-1",
    roles: Iterable[str] = ("router", "learner"),
    with_emitter: bool = True,
    topics: Topics | None = None,
    worker_options: dict[str, Any] | None = None,
    sink_options: dict[str, Any] | None = None,
    emitter_options: dict[str, Any] | None = None,
) -> StreamServices:
    """Start the parts asked for; see the module docstring. ``roles=()`` runs no Faust worker."""
    topics = topics or Topics()
    await ensure(bootstrap_servers, topics, settings.kafka.partitions, settings.kafka.replication_factor)
    services = StreamServices()
    try:
        starts = []
        roles = tuple(roles)
        if roles:
            from streams.agents.worker import Worker

            services.worker = Worker(settings, bootstrap_servers, embedded=embedded, worker_id=worker_id,
                                     roles=roles, topics=topics, sim_url=sim_url, **(worker_options or {}))
            starts.append(services.worker.start())
        if clickhouse is not None:
            from streams.agents.sink import SinkAgent

            services.sink = SinkAgent.from_settings(settings, bootstrap_servers, clickhouse, topics=topics,
                                                    embedded=embedded, worker_id=worker_id, **(sink_options or {}))
            starts.append(services.sink.start())
        if with_emitter:
            services.emitter = KafkaEventSink.from_settings(settings, bootstrap_servers, topics=topics,
                                                            embedded=embedded, **(emitter_options or {}))
            starts.append(services.emitter.start())
        if gateway_router is not None:
            services.follower = PolicyFollower.for_router(settings, bootstrap_servers, gateway_router,
                                                          topics=topics)
            starts.append(services.follower.start())
        await asyncio.gather(*starts)
    except BaseException:
        await services.stop()
        raise
    return services
