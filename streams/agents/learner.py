"""The learner agent: outcome ⨝ the session's decisions → reward → bandit update → policy snapshots.

Decisions, traces and outcomes are all keyed by session id, so one worker owns a session on all three
topics (the worker's consumer group assigns co-partitioned topics together) and the join is local and in memory:

- a decision is credited by the first outcome of its session at or after it (by ``ts_ms``), or by
  the outcome that names its ``request_id``; each decision is credited once;
- outcomes may arrive before their decisions (different topics, different producers): they are kept
  and credit decisions that show up later;
- a decision's cost is its trace's ``cost_usd``. The three topics are read in no fixed order, so a
  credited decision whose trace has not arrived yet waits for it (up to ``cost_grace_s``); after that
  its share of the outcome's ``cost_usd`` (else 0) stands in. The reward is
  ``U = alpha * success - beta * cost_usd`` (``settings.routing.bandit``), learned with
  ``ContextualBandit.learn_outcome``; the result does not depend on arrival order;
- sessions idle longer than ``routing.session_ttl_s`` are forgotten (bounded memory).

The learner's bandit holds only its own updates on top of the shared prior and is published as a
partial snapshot (see ``streams.agents.policy_snapshots``) every ``publish_every_s`` when it changed, and at
once after ``publish_after`` updates (a significant change).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.agents.app import WeaveAvroCodec
from streams.agents.policy_snapshots import POLICY_NAME, base_bandit, snapshot_event
from streams.agents.policy_store import save_partial
from streams.config import Settings
from streams.routing.bandit import ContextualBandit

log = logging.getLogger("weave.learner")


@dataclass(slots=True)
class Credit:
    """One decision credited with an outcome: what the bandit learns."""

    decision_id: str
    session_id: str
    model: str
    context: dict[str, float]
    success: float
    cost_usd: float | None  # None: wait for the trace
    fallback_cost: float = 0.0
    ts_s: float | None = None  # when the outcome was observed: the clock of forgetting (half_life)


@dataclass(slots=True)
class _Decision:
    decision_id: str
    request_id: str
    model: str
    context: dict[str, float]
    ts_ms: int
    cost_usd: float | None = None
    credited: bool = False


@dataclass(slots=True)
class _Outcome:
    event_id: str
    request_id: str | None
    ts_ms: int
    success: float
    cost_usd: float | None


@dataclass(slots=True)
class _Session:
    decisions: OrderedDict[str, _Decision] = field(default_factory=OrderedDict)
    outcomes: list[_Outcome] = field(default_factory=list)
    outcome_ids: set[str] = field(default_factory=set)
    touched: float = 0.0


class OutcomeJoiner:
    """The per-session join state of one learner (see the module docstring for the rules)."""

    def __init__(self, ttl_s: float = 3600.0, max_sessions: int = 200_000,
                 clock: Callable[[], float] = time.monotonic, max_per_session: int = 1000,
                 cost_grace_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self.cost_grace_s = cost_grace_s
        # Credits waiting for their decision's trace (cost): decision id -> (credit, deadline).
        self.awaiting: OrderedDict[str, tuple[Credit, float]] = OrderedDict()
        self.max_sessions = max_sessions
        self.max_per_session = max_per_session
        self.clock = clock
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        self.costs: OrderedDict[str, float] = OrderedDict()  # decision id -> cost, from traces
        self.pending_outcomes = 0

    def _session(self, sid: str) -> _Session:
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = _Session()
        else:
            self.sessions.move_to_end(sid)
        s.touched = self.clock()
        return s

    def expire(self) -> int:
        """Forget idle sessions; returns how many."""
        now = self.clock()
        dropped = 0
        while self.sessions:
            sid, s = next(iter(self.sessions.items()))
            if now - s.touched < self.ttl_s and len(self.sessions) <= self.max_sessions:
                break
            self.sessions.popitem(last=False)
            dropped += 1
        while len(self.costs) > self.max_sessions * 4:
            self.costs.popitem(last=False)
        return dropped

    def add_trace(self, trace: dict[str, Any]) -> list[Credit]:
        did = trace.get("decision_id")
        if not did:
            return []
        cost = float(trace.get("cost_usd") or 0.0)
        self.costs[did] = cost
        waiting = self.awaiting.pop(did, None)
        if waiting is None:
            return []
        waiting[0].cost_usd = cost
        return [waiting[0]]

    def ready(self, credits: list[Credit]) -> list[Credit]:
        """Credits with a known cost; the others wait for their trace (see ``due``)."""
        out = []
        deadline = self.clock() + self.cost_grace_s
        for c in credits:
            if c.cost_usd is None:
                self.awaiting[c.decision_id] = (c, deadline)
            else:
                out.append(c)
        return out

    def due(self) -> list[Credit]:
        """Credits whose trace did not come in time: their cost falls back to the outcome's share."""
        now = self.clock()
        out = []
        while self.awaiting:
            did, (c, deadline) = next(iter(self.awaiting.items()))
            if deadline > now:
                break
            self.awaiting.popitem(last=False)
            c.cost_usd = c.fallback_cost
            out.append(c)
        return out

    def add_decision(self, d: dict[str, Any], known_arms: set[str] | None = None) -> list[Credit]:
        sid = d.get("session_id") or ""
        did = d.get("event_id") or ""
        if not sid or not did or (known_arms is not None and d.get("model") not in known_arms):
            return []
        s = self._session(sid)
        if did in s.decisions:
            return []  # redelivered
        dec = _Decision(did, d.get("request_id") or "", d["model"], dict(d.get("context") or {}),
                        int(d.get("ts_ms") or 0))
        s.decisions[did] = dec
        if len(s.decisions) > self.max_per_session:
            s.decisions.popitem(last=False)
        for o in sorted(s.outcomes, key=lambda o: o.ts_ms):
            if self._matches(o, dec):
                return [self._credit(sid, dec, o, share=1)]
        return []

    def add_outcome(self, o: dict[str, Any]) -> list[Credit]:
        sid = o.get("session_id") or ""
        eid = o.get("event_id") or ""
        if not sid:
            return []
        s = self._session(sid)
        if eid and eid in s.outcome_ids:
            return []  # redelivered
        s.outcome_ids.add(eid)
        out = _Outcome(eid, o.get("request_id"), int(o.get("ts_ms") or 0), float(o.get("success") or 0.0),
                       None if o.get("cost_usd") is None else float(o["cost_usd"]))
        s.outcomes.append(out)
        if len(s.outcomes) > self.max_per_session:
            s.outcomes.pop(0)
        matched = [d for d in s.decisions.values() if not d.credited and self._matches(out, d)]
        return [self._credit(sid, d, out, share=len(matched)) for d in matched]

    @staticmethod
    def _matches(o: _Outcome, d: _Decision) -> bool:
        if d.credited:
            return False
        if o.request_id:
            return o.request_id == d.request_id
        return d.ts_ms <= o.ts_ms

    def _credit(self, sid: str, d: _Decision, o: _Outcome, share: int) -> Credit:
        d.credited = True
        fallback = (o.cost_usd / max(1, share)) if o.cost_usd is not None else 0.0
        return Credit(d.decision_id, sid, d.model, d.context, o.success, self.costs.get(d.decision_id), fallback,
                      o.ts_ms / 1000.0 if o.ts_ms else None)


class Learner:
    """The learner's state: join, partial bandit, publish bookkeeping. Pure; the Faust agent drives it."""

    def __init__(
        self,
        settings: Settings,
        learner_id: str,
        *,
        bandit: ContextualBandit | None = None,
        publish_every_s: float = 2.0,
        publish_after: int = 500,
        clock: Callable[[], float] = time.monotonic,
        on_outcome: Callable[[str, float], None] | None = None,
        cost_grace_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.learner_id = learner_id
        self.bandit = bandit or base_bandit(settings)
        self.joiner = OutcomeJoiner(settings.routing.session_ttl_s, clock=clock, cost_grace_s=cost_grace_s)
        self.arms = {m.name for m in settings.models}
        self.publish_every_s = publish_every_s
        self.publish_after = publish_after
        self.clock = clock
        self.on_outcome = on_outcome
        self.updates = 0
        self.outcomes_seen = 0
        self._published_version = self.bandit.version
        self._last_publish = clock()
        self._events = 0

    def handle(self, name: str, event: dict[str, Any]) -> int:
        """One decoded event; returns the number of bandit updates it caused."""
        return self._learn(self._join(name, event))

    def handle_many(self, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Decoded ``(name, value)`` events in order; the same result as ``handle`` on each in turn.

        The joins run event by event; the credits they release are learned in one
        ``ContextualBandit.learn_many`` call (bit-identical to learning them one by one).
        """
        credits: list[Credit] = []
        for name, event in events:
            credits.extend(self._join(name, event))
        return self._learn(credits)

    def _join(self, name: str, event: dict[str, Any]) -> list[Credit]:
        if name == "Decision":
            credits = self.joiner.add_decision(event, self.arms)
        elif name == "Outcome":
            self.outcomes_seen += 1
            credits = self.joiner.add_outcome(event)
            if self.on_outcome is not None:
                try:
                    self.on_outcome(event.get("session_id") or "", float(event.get("success") or 0.0))
                except Exception:
                    log.exception("on_outcome hook failed")
        elif name == "Trace":
            credits = self.joiner.add_trace(event)
        else:
            return []
        self._events += 1
        if self._events % 10_000 == 0:
            self.joiner.expire()
        return self.joiner.ready(credits)

    def tick(self) -> int:
        """Apply credits whose trace never came (call periodically); returns the updates made."""
        return self._learn(self.joiner.due())

    def _learn(self, credits: list[Credit]) -> int:
        if credits:
            self.bandit.learn_many([(c.context, c.model, c.success, float(c.cost_usd or 0.0), c.ts_s) for c in credits])
        self.updates += len(credits)
        return len(credits)

    @property
    def dirty(self) -> bool:
        return self.bandit.version != self._published_version

    def should_publish(self) -> bool:
        if not self.dirty:
            return False
        if self.bandit.version - self._published_version >= self.publish_after:
            return True
        return self.clock() - self._last_publish >= self.publish_every_s

    def republish(self) -> None:
        """Publish the current partial at the next cadence even if nothing changed (restored state)."""
        self._published_version = -1

    def snapshot(self, policy: str = POLICY_NAME) -> dict[str, Any]:
        """The PolicySnapshot event to publish now (marks it published)."""
        event = snapshot_event(self.bandit, learner_id=self.learner_id, updates=self.updates, policy=policy)
        self._published_version = self.bandit.version
        self._last_publish = self.clock()
        return event


async def publish_snapshot(learner: Learner, publisher: Any, *, policy: str = POLICY_NAME) -> None:
    """Publish the learner's partial snapshot to the policy topic and wait for the broker."""
    await (await queue_snapshot(learner, publisher, policy=policy))


async def queue_snapshot(learner: Learner, publisher: Any, *, policy: str = POLICY_NAME) -> asyncio.Future[Any]:
    """Queue the learner's partial snapshot for the policy topic; returns its delivery future."""
    topics = publisher.topics
    event = learner.snapshot(policy)
    save_partial(learner.settings.data_dir, topics.policy, event, publisher.codec)
    delivered = await publisher.send(topics.policy, f"{policy}/{learner.learner_id}", "PolicySnapshot", event)
    log.info("learner %s publishes %s version %s (%d updates)", learner.learner_id, policy,
             event["version"], event["updates"])
    return delivered


async def learn_batch(learner: Learner, publisher: Any, items: list[tuple[Any, Any]], *,
                      policy: str = POLICY_NAME) -> None:
    """One batch of ``(source message, decoded value)``: join and learn, dead-letter the poison,
    publish a snapshot if one is due; returns once those outputs are delivered (at-least-once)."""
    futures = await queue_learn_batch(learner, publisher, items, policy=policy)
    if futures:
        await asyncio.gather(*futures)


async def queue_learn_batch(learner: Learner, publisher: Any, items: list[tuple[Any, Any]], *,
                            policy: str = POLICY_NAME) -> list[asyncio.Future[Any]]:
    """``learn_batch`` without waiting: returns the delivery futures of its outputs."""
    from streams.agents.app import Event, Poison

    futures = []
    events = []
    for source, value in items:
        if isinstance(value, Event):
            events.append((value.name, value.value))
        elif isinstance(value, Poison):
            futures.append(await publisher.dead_letter(source, value.reason, "decode"))
    learner.handle_many(events)
    if learner.should_publish():
        futures.append(await queue_snapshot(learner, publisher, policy=policy))
    return futures


async def learner_tick(learner: Learner, publisher: Any, *, policy: str = POLICY_NAME) -> None:
    """The cadence: credits whose trace never came, then a snapshot if one is due."""
    learner.tick()
    if learner.should_publish():
        await publish_snapshot(learner, publisher, policy=policy)


def attach_learner(app: Any, learner: Learner, publisher: Any, *, policy: str = POLICY_NAME,
                   tick_s: float = 0.5, batch_max: int = 1000, within_s: float = 0.01) -> Any:
    """Register the learner agent (and its publish timer) on a Faust ``app``; call before ``app.start()``.

    ``publisher`` is the worker's ``streams.agents.publisher.Publisher`` (snapshots, dead letters).
    """

    topics = publisher.topics
    source = app.topic(topics.decisions, topics.traces, topics.outcomes, key_type=bytes, key_serializer="raw",
                       value_serializer=WeaveAvroCodec(publisher.codec))

    async def learn(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=within_s):
            await learn_batch(learner, publisher, [(event, event.value) for event in events], policy=policy)

    async def on_cadence() -> None:
        await learner_tick(learner, publisher, policy=policy)

    app.timer(interval=tick_s, name="weave-learner-publish")(on_cadence)
    return app.agent(source, name="weave-learner-agent")(learn)
