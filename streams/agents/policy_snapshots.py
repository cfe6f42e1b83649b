"""Learned-policy snapshots on router.policy, and the follower every gateway and router agent runs.

Each learner worker learns only from the outcomes of its own partitions, and publishes its *partial*
bandit (prior + its own updates) keyed ``<policy>/<learner_id>`` on the compacted topic. The policy
in force is the exact merge of the newest partial of every learner: ``ContextualBandit.merge`` adds
sufficient statistics relative to the shared prior, so N workers that split the partitions end with
the same policy one worker learning everything would have. Its version is the sum of the partials'
versions (each counts its updates), so it only grows.

``PolicyFollower`` is a plain aiokafka consumer of the single policy partition, without a consumer
group (every process needs every snapshot), from the beginning. ``start()`` returns once it has
caught up, so a process serves its first request with the newest policy; afterwards each new
snapshot is merged and handed to ``on_policy`` (e.g. ``Router.set_policy``), which swaps one
reference: requests in flight finish on the policy they started with, none is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.agents.records import new_id, now_ms
from streams.agents.topics import Topics
from streams.config import Settings
from streams.events.codec import DecodeError, EventCodec
from streams.routing.bandit import ContextualBandit, bandit_for

log = logging.getLogger("weave.policy")

POLICY_NAME = "bandit"


def base_bandit(settings: Settings) -> ContextualBandit:
    """The shared prior every learner starts from (same arms, priors and parameters on every worker)."""
    return bandit_for(settings)


def snapshot_key(policy: str, learner_id: str) -> bytes:
    return f"{policy}/{learner_id}".encode()


def snapshot_event(bandit: ContextualBandit, *, learner_id: str, updates: int, policy: str = POLICY_NAME,
                   version: int | None = None) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "ts_ms": now_ms(),
        "policy": policy,
        "version": int(bandit.version if version is None else version),
        "updates": int(updates),
        "learner_id": learner_id,
        "state": bandit.snapshot(),
    }


@dataclass(slots=True)
class Partial:
    learner_id: str
    version: int
    updates: int
    state: bytes


def merge_partials(base: Callable[[], ContextualBandit], partials: list[Partial]) -> ContextualBandit:
    """The policy in force: the prior plus every learner's updates (exact, see the module docstring)."""
    merged = base()
    for p in sorted(partials, key=lambda p: p.learner_id):  # fixed order: identical floats everywhere
        merged.merge(ContextualBandit.restore(p.state))
    return merged


class PolicyView:
    """The newest partial per learner of one policy; turns snapshot events into the merged policy."""

    def __init__(self, base: Callable[[], ContextualBandit], policy: str = POLICY_NAME) -> None:
        self.base = base
        self.policy = policy
        self.partials: dict[str, Partial] = {}

    def offer(self, event: dict[str, Any]) -> bool:
        """Take a PolicySnapshot event; True when it is newer than what we had from its learner."""
        if event.get("policy") != self.policy:
            return False
        learner = event.get("learner_id") or ""
        have = self.partials.get(learner)
        version = int(event.get("version") or 0)
        if have is not None and have.version >= version:
            return False
        self.partials[learner] = Partial(learner, version, int(event.get("updates") or 0), bytes(event["state"]))
        return True

    @property
    def version(self) -> int:
        return sum(p.version for p in self.partials.values())

    def merged(self) -> ContextualBandit:
        return merge_partials(self.base, list(self.partials.values()))


OnPolicy = Callable[[ContextualBandit, int], None]


class PolicyFollower:
    """Follows router.policy; ``on_policy(bandit, version)`` gets every newer merged policy."""

    def __init__(
        self,
        bootstrap_servers: str,
        on_policy: OnPolicy,
        *,
        base: Callable[[], ContextualBandit],
        topics: Topics | None = None,
        policy: str = POLICY_NAME,
        codec: EventCodec | None = None,
        catch_up_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.on_policy = on_policy
        self.topics = topics or Topics()
        self.view = PolicyView(base, policy)
        self.codec = codec or EventCodec()
        self.catch_up_timeout_s = catch_up_timeout_s
        self.consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.applied_version = -1
        self.snapshots_seen = 0
        self.last_error = ""

    @classmethod
    def for_router(cls, settings: Settings, bootstrap_servers: str, router: Any, **kwargs: Any) -> PolicyFollower:
        """A follower that hot-swaps ``router`` (``Router.set_policy``)."""
        return cls(bootstrap_servers, lambda bandit, version: router.set_policy(bandit, version),
                   base=lambda: base_bandit(settings), **kwargs)

    async def start(self) -> None:
        """Read every snapshot so far, apply the newest merged policy, then follow in the background."""
        tp = TopicPartition(self.topics.policy, 0)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                         enable_auto_commit=False, auto_offset_reset="earliest",
                                         fetch_max_wait_ms=200)
        await self.consumer.start()
        self.consumer.assign([tp])
        await self.consumer.seek_to_beginning(tp)
        await self._catch_up(tp)
        self._task = asyncio.create_task(self._follow(), name="weave-policy-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None

    async def _catch_up(self, tp: TopicPartition) -> None:
        assert self.consumer is not None
        deadline = time.monotonic() + self.catch_up_timeout_s
        try:
            end = (await self.consumer.end_offsets([tp]))[tp]
        except Exception:
            end = 0
        # The embedded broker may report the log end too low: read until the end AND an empty fetch.
        while time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=200)
            self._take(batch)
            if not batch and await self.consumer.position(tp) >= end:
                break
        self._apply()

    async def _follow(self) -> None:
        assert self.consumer is not None
        while True:
            try:
                batch = await self.consumer.getmany(timeout_ms=1000)
                if self._take(batch):
                    self._apply()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker may be away; keep the current policy and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("policy follower: %s", self.last_error)
                await asyncio.sleep(1.0)

    def _take(self, batch: dict[TopicPartition, list[Any]]) -> bool:
        changed = False
        for records in batch.values():
            for r in records:
                self.snapshots_seen += 1
                try:
                    name, event = self.codec.decode(r.value)
                except DecodeError as exc:
                    log.warning("policy topic: undecodable record at offset %s: %s", r.offset, exc)
                    continue
                if name == "PolicySnapshot" and self.view.offer(event):
                    changed = True
        return changed

    def _apply(self) -> None:
        if not self.view.partials or self.view.version <= self.applied_version:
            return
        try:
            merged = self.view.merged()
        except Exception as exc:  # a corrupt snapshot must not take the router down: keep the old one
            self.last_error = f"merge failed: {type(exc).__name__}: {exc}"
            log.exception("cannot merge policy snapshots; keeping version %s", self.applied_version)
            return
        self.on_policy(merged, merged.version)
        self.applied_version = merged.version
        log.info("policy %s version %s applied (%d learners)", self.view.policy, merged.version,
                 len(self.view.partials))
