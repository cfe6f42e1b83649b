"""Replay through Kafka: the same online simulation, with the learning done by the real learner agent.

``run_replay`` keeps the policy in the simulation's hands: decide, pay, learn, all in one process.
Here the pieces are the production ones, wired as a gateway and a learner worker would be:

- the decision is made by the *gateway-side copy* of the policy: whatever bandit the
  ``PolicyFollower`` last merged from ``router.policy`` (the prior before any snapshot);
- each attempt is published through ``KafkaEventSink`` like the gateway does: a Decision (with the
  bandit's context vector), a Trace (with the attempt's cost) and, once ``PaidOutcomes`` says how
  the attempt went, an Outcome naming the attempt's ``request_id``;
- a worker with role ``learner`` (batch engine by default, Faust optional) (``streams.agents.worker.Worker``) joins them, computes the
  reward, updates its bandit and publishes snapshots on ``router.policy``, which the follower
  merges and hot-swaps.

The broker is the embedded one, started here, unless ``KAFKA_BOOTSTRAP_SERVERS`` (or the config)
names one. Every seed runs on topics of its own (a fresh prefix) and a consumer group of its own,
so each learner starts from the prior, as the in-process replay does.

Staleness. A real gateway decides on the policy it has, while outcomes are still on their way to
the learner. ``max_lag`` says how many outcomes the gateway copy may be behind before a decision
waits for the policy to catch up (bounded by ``sync_timeout_s``; after that the decision is taken
on the stale policy and counted in ``KafkaStats.timeouts``). ``max_lag=0`` is the strict mode:
every decision sees every earlier outcome, as in the in-process replay, so the two differ only by
the random draws (the follower builds a fresh bandit on each merge; its seed is derived from the
run's seed and the merge count) and by float rounding of the merge. Larger values are a batch
window: up to ``max_lag + 1`` decisions per round trip, each on a policy that may miss up to
``max_lag`` outcomes (a few tasks, the retries of one task included).

Why the default is not 0: one round trip (emitter -> learner -> router.policy -> follower) takes
~0.75 s on the embedded broker, because Tansu answers a fetch only when its ``max_wait`` expires
(it does not wake a waiting fetch on new data) and Faust's consumer fetches with a fixed 1.5 s
``max_wait``. On Apache Kafka a fetch returns as soon as data arrives, and the round trip is a few
milliseconds. With the default window a 261-task replay takes about a minute here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streams.agents.emitter import KafkaEventSink
from streams.agents.policy_snapshots import POLICY_NAME, PolicyFollower
from streams.agents.records import new_id, now_ms
from streams.agents.topics import Topics, ensure
from streams.agents.worker import Worker
from streams.config import ProviderSettings, Settings, load_settings
from streams.evaluation.datasets import OutcomeMatrix, load_dataset, task_context
from streams.evaluation.replay import (
    DEFAULT_KAFKA_MAX_LAG,
    DEFAULT_MAX_ATTEMPTS,
    PaidOutcomes,
    ReplayReport,
    SeedRun,
    Session,
    TaskAttempts,
    bandit_settings,
    build_report,
    catalogue,
    make_bandit,
    run_replay,
    score_run,
    task_order,
)
from streams.infra.broker import EmbeddedBroker
from streams.routing.bandit import REFERENCE_INPUT_TOKENS, ContextualBandit
from streams.routing.decision import Decision
from streams.routing.settings import BanditSettings

log = logging.getLogger("weave.replay.kafka")

PROVIDER = "replay"
DEFAULT_SYNC_TIMEOUT_S = 10.0
DEFAULT_READY_TIMEOUT_S = 60.0


@dataclass
class KafkaStats:
    """How the run through Kafka went: volume, round trips and how stale the decisions were."""

    bootstrap_servers: str
    embedded: bool
    max_lag: int
    decisions: int = 0
    outcomes_learned: int = 0  # by the learner agent (its update count), summed over seeds
    policy_swaps: int = 0  # merged policies the follower handed over
    # Pulls per model in the gateway's final policy, summed over seeds: what the learner agent learned.
    learned_pulls: dict[str, int] = field(default_factory=dict)
    waits: int = 0  # decisions that waited for the policy to catch up
    wait_s: float = 0.0
    timeouts: int = 0  # decisions taken on a policy still more than max_lag behind after the timeout
    mean_lag: float = 0.0  # outcomes emitted but not yet in the policy, at decision time
    max_seen_lag: int = 0
    startup_s: float = 0.0  # topics, consumer-group join, follower catch-up (per seed, summed)
    wall_s: float = 0.0


@dataclass
class KafkaComparison:
    """The replay through Kafka and the in-process replay on the same seeds and task orders."""

    kafka: ReplayReport
    in_process: ReplayReport
    stats: KafkaStats
    per_seed: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The through-Kafka report's fields (same shape as a plain replay) plus the comparison."""
        out = self.kafka.to_dict()
        out["through_kafka"] = asdict(self.stats)
        out["in_process"] = {
            k: v for k, v in self.in_process.to_dict().items()
            if k in ("success_rate", "cost_per_task", "success_std", "cost_std", "success_vs_best",
                     "cost_vs_best", "attempts_per_task", "meets_target", "models_chosen")
        }
        out["per_seed"] = self.per_seed
        return out


def replay_settings(matrix: OutcomeMatrix, bandit: BanditSettings, *, bootstrap_servers: str, data_dir: str,
                    partitions: int = 4) -> Settings:
    """The configuration the learner worker runs with: the matrix's models as the catalogue.

    The learner only learns on configured models and starts from ``base_bandit(settings)``; the
    price is set so that its cost prior is the model's mean cost per task, as ``make_bandit`` has it
    (the follower merges the learner's *updates* onto ``make_bandit``'s prior, so the two priors
    need not be bit-identical; they are the same up to rounding).
    """
    means = matrix.mean_cost()
    models = [
        m.model_copy(update={"price_in": means[m.name] * 1e6 / REFERENCE_INPUT_TOKENS, "price_out": 0.0})
        for m in catalogue(matrix)
    ]
    base = load_settings(env={})
    return base.model_copy(update={
        "providers": [ProviderSettings(name=PROVIDER, dialect="openai_chat", base_url="sim")],
        "models": models,
        "routing": base.routing.model_copy(update={"bandit": bandit, "routes": [], "default_model": None}),
        "kafka": base.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers, "partitions": partitions}),
        "data_dir": data_dir,
    })


class GatewayCopy:
    """The gateway side of one run: the follower-fed policy it decides with (swapped on every merge)."""

    def __init__(self, matrix: OutcomeMatrix, bandit: BanditSettings, *, beta: float, seed: int) -> None:
        self.matrix = matrix
        self.bandit_settings = bandit
        self.beta = beta
        self.seed = seed
        self._merges = itertools.count()
        self.policy: ContextualBandit = self.base()
        self.version = 0
        self.swaps = 0
        self.changed = asyncio.Event()

    def base(self) -> ContextualBandit:
        # A fresh bandit per merge (that is how PolicyFollower builds the policy in force): give each
        # one its own random stream, or every decision after a swap would reuse the same draws.
        return make_bandit(self.matrix, self.bandit_settings, beta=self.beta,
                           seed=self.seed * 1_000_003 + next(self._merges))

    def on_policy(self, bandit: ContextualBandit, version: int) -> None:
        # Called on the event loop by the follower: one reference swap, like Router.set_policy.
        bandit.keep_decision_state(self.policy)
        self.policy, self.version = bandit, version
        self.swaps += 1
        self.changed.set()

    async def caught_up(self, target: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.version < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return True


class KafkaRun:
    """One seed through the topics: learner worker, emitter and follower on a fresh topic prefix."""

    def __init__(self, matrix: OutcomeMatrix, bandit: BanditSettings, *, beta: float, seed: int,
                 bootstrap_servers: str, embedded: bool, data_dir: str, stats: KafkaStats,
                 sync_timeout_s: float = DEFAULT_SYNC_TIMEOUT_S,
                 ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.matrix = matrix
        self.beta = beta
        self.seed = seed
        self.bootstrap_servers = bootstrap_servers
        self.embedded = embedded
        self.stats = stats
        self.sync_timeout_s = sync_timeout_s
        self.ready_timeout_s = ready_timeout_s
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.topics = Topics.prefixed(f"replay{tag}.")
        self.settings = replay_settings(matrix, bandit.model_copy(update={"beta": beta, "seed": seed}),
                                        bootstrap_servers=bootstrap_servers, data_dir=data_dir)
        self.gateway = GatewayCopy(matrix, bandit, beta=beta, seed=seed)
        # publish_after=1: the learner publishes after every input batch that changed its bandit, so
        # the policy's version tracks the learned outcomes closely (the gateway waits on it).
        self.worker = Worker(self.settings, bootstrap_servers, embedded=embedded, worker_id=f"learner-{tag}",
                             roles=("learner",), topics=self.topics, app_id=f"weave-replay-{tag}",
                             publish_after=1, publish_every_s=0.2)
        self.emitter = KafkaEventSink.from_settings(self.settings, bootstrap_servers, topics=self.topics,
                                                    embedded=embedded, spill_name=f"replay-{tag}.spill",
                                                    journal=False)  # no sink stores these
        self.follower = PolicyFollower(bootstrap_servers, self.gateway.on_policy, base=self.gateway.base,
                                       topics=self.topics, policy=POLICY_NAME)
        self.emitted = 0  # outcomes published so far

    async def start(self) -> None:
        t0 = time.monotonic()
        await ensure(self.bootstrap_servers, self.topics, self.settings.kafka.partitions,
                     self.settings.kafka.replication_factor)
        await asyncio.gather(self.worker.start(), self.emitter.start(), self.follower.start())
        # The learner must own the partitions before the first outcome counts on it.
        if not await self.worker.ready(self.ready_timeout_s):
            raise RuntimeError(f"learner worker did not join its group within {self.ready_timeout_s:.0f}s")
        self.stats.startup_s += time.monotonic() - t0

    async def stop(self) -> None:
        for part in (self.emitter, self.follower, self.worker):
            with contextlib.suppress(Exception):
                await part.stop()

    async def _sync(self, max_lag: int) -> None:
        """Before a decision: let the policy catch up to within ``max_lag`` outcomes (bounded wait)."""
        if self.emitted - self.gateway.version > max_lag:
            self.stats.waits += 1
            t0 = time.monotonic()
            if not await self.gateway.caught_up(self.emitted - max_lag, self.sync_timeout_s):
                self.stats.timeouts += 1
                log.warning("policy still at version %d after %.1fs (%d outcomes sent); deciding on it",
                            self.gateway.version, self.sync_timeout_s, self.emitted)
            self.stats.wait_s += time.monotonic() - t0
        # The staleness this decision is taken with: outcomes sent that its policy has not learned.
        lag = self.emitted - self.gateway.version
        self.stats.mean_lag += lag  # summed here, divided by the number of decisions at the end
        self.stats.max_seen_lag = max(self.stats.max_seen_lag, lag)

    def _publish(self, session_id: str, attempt: int, arm: str, ctx: dict[str, float], propensity: float,
                 confidence: float, outcome: tuple[float, float]) -> None:
        """The attempt's events, as the gateway (decision, trace) and the test harness (outcome) send them."""
        request_id = f"{session_id}/{attempt}"
        success, cost = outcome
        ts = now_ms()
        decision = Decision(
            decision_id=new_id(), session_id=session_id, model=arm, provider=PROVIDER, policy=POLICY_NAME,
            policy_version=self.gateway.version, reason=f"replay attempt {attempt}", confidence=confidence,
            propensity=propensity, ts_ms=ts,
        )
        self.emitter.emit_decision(decision, context=ctx, request_id=request_id, source="replay")
        self.emitter.emit_trace({
            "event_id": new_id(), "ts_ms": ts, "request_id": request_id, "session_id": session_id,
            "decision_id": decision.decision_id, "client_dialect": "replay", "provider_dialect": "replay",
            "model": arm, "provider": PROVIDER, "route": "default", "policy": POLICY_NAME,
            "policy_version": self.gateway.version, "status": 200, "cost_usd": cost, "attempts": 1,
            "source": "replay",
        })
        # Named by request_id: it credits exactly this attempt's decision (the learner's join rule).
        self.emitter.emit_outcome({
            "event_id": new_id(), "ts_ms": ts + 1, "session_id": session_id, "request_id": request_id,
            "success": success, "cost_usd": cost, "metadata": {"attempt": str(attempt)}, "source": "replay",
        })
        self.emitted += 1

    async def simulate(self, outcomes: PaidOutcomes, *, order: Sequence[int], max_attempts: int, max_lag: int,
                       contexts: Sequence[dict[str, float]]) -> list[Session]:
        """``replay.simulate``'s loop, with learning handed to the topics (see the module docstring)."""
        matrix = self.matrix
        model_index = {m: j for j, m in enumerate(matrix.models)}
        sessions: list[Session] = []
        for t in order:
            session_id = f"replay-{self.tag}-{matrix.tasks[t].task_id}"
            attempts = TaskAttempts(t, contexts[t], matrix.models, max_attempts)
            while not attempts.done:
                await self._sync(max_lag)
                pick = attempts.decide(self.gateway.policy)  # the reference the gateway holds right now
                if pick is None:
                    break
                self.stats.decisions += 1
                success, cost = outcomes.pay(int(t), model_index[pick.arm])
                k = len(attempts.tried) + 1
                self._publish(session_id, k, pick.arm, pick.context, pick.propensity, pick.confidence,
                              (success, cost))
                attempts.record(pick, success, cost, told=success)
            sessions.append(attempts.session)
        return sessions

    async def drain(self) -> int:
        """Wait until the learner has learned every outcome sent; returns its update count."""
        await self.emitter.idle(self.sync_timeout_s)
        await self.gateway.caught_up(self.emitted, self.sync_timeout_s)
        learner = self.worker.learner
        return learner.updates if learner is not None else 0


def _bootstrap(config: Settings | BanditSettings | str | Path | None) -> str | None:
    """An external broker from the config file or ``KAFKA_BOOTSTRAP_SERVERS``; None: start the embedded one."""
    if isinstance(config, Settings):
        return config.kafka.bootstrap_servers
    if isinstance(config, str | Path):
        return load_settings(config).kafka.bootstrap_servers
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


async def replay_through_kafka(
    matrix: OutcomeMatrix,
    settings: BanditSettings,
    *,
    seeds: int,
    max_attempts: int,
    bootstrap_servers: str,
    embedded: bool,
    max_lag: int = DEFAULT_KAFKA_MAX_LAG,
    sync_timeout_s: float = DEFAULT_SYNC_TIMEOUT_S,
    data_dir: str | Path | None = None,
) -> tuple[list[SeedRun], KafkaStats]:
    """One pass per seed through the topics; returns the scored runs and the transport statistics."""
    stats = KafkaStats(bootstrap_servers=bootstrap_servers, embedded=embedded, max_lag=max_lag)
    contexts = [task_context(t) for t in matrix.tasks]
    base_seed = settings.seed or 0
    runs: list[SeedRun] = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="weave-replay-") as tmp:
        for i in range(seeds):
            seed = base_seed + i
            order = task_order(matrix, seed)
            run = KafkaRun(matrix, settings, beta=settings.beta, seed=seed, bootstrap_servers=bootstrap_servers,
                           embedded=embedded, data_dir=str(data_dir or tmp), stats=stats,
                           sync_timeout_s=sync_timeout_s)
            try:
                await run.start()
                sessions = await run.simulate(PaidOutcomes(matrix), order=order, max_attempts=max_attempts,
                                              max_lag=max_lag, contexts=contexts)
                learned = await run.drain()
            finally:
                await run.stop()
            stats.outcomes_learned += learned
            stats.policy_swaps += run.gateway.swaps
            for arm in matrix.models:
                stats.learned_pulls[arm] = stats.learned_pulls.get(arm, 0) + run.gateway.policy.pulls(arm)
            runs.append(score_run(matrix, settings, beta=settings.beta, order=order, sessions=sessions))
    stats.wall_s = time.monotonic() - t_start
    stats.mean_lag = stats.mean_lag / stats.decisions if stats.decisions else 0.0
    return runs, stats


def run_kafka_replay(
    dataset_dir: str | Path | OutcomeMatrix,
    *,
    seeds: int = 1,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    config: Settings | BanditSettings | str | Path | None = None,
    bootstrap_servers: str | None = None,
    embedded: bool | None = None,
    max_lag: int = DEFAULT_KAFKA_MAX_LAG,
    sync_timeout_s: float = DEFAULT_SYNC_TIMEOUT_S,
    quality_target: float | None = None,
) -> KafkaComparison:
    """``weave-router replay --through-kafka``: the replay through the topics and the learner agent,
    next to the in-process replay on the same seeds (same task orders, same settings).

    ``bootstrap_servers``: a running broker (``embedded`` says whether it is the embedded kind, for
    the Faust workarounds); default: the config's / ``KAFKA_BOOTSTRAP_SERVERS``, else an embedded
    broker started for the run. Only the default beta is run through Kafka (no cost-quality sweep).
    """
    matrix = dataset_dir if isinstance(dataset_dir, OutcomeMatrix) else load_dataset(dataset_dir)
    settings = bandit_settings(config)
    if quality_target is not None:
        settings = settings.model_copy(update={"quality_target": quality_target})
    bootstrap = bootstrap_servers or _bootstrap(config)
    broker: EmbeddedBroker | None = None
    if bootstrap is None:
        broker = EmbeddedBroker()
        broker.start()
        bootstrap, embedded = broker.bootstrap_servers, True
    try:
        runs, stats = asyncio.run(replay_through_kafka(
            matrix, settings, seeds=seeds, max_attempts=max_attempts, bootstrap_servers=bootstrap,
            embedded=bool(embedded), max_lag=max_lag, sync_timeout_s=sync_timeout_s,
        ))
    finally:
        if broker is not None:
            broker.stop()
    kafka = build_report(matrix, settings, runs, seeds=seeds, max_attempts=max_attempts)
    local = run_replay(matrix, seeds=seeds, max_attempts=max_attempts, config=settings, curve=False)
    per_seed = [{"seed": float((settings.seed or 0) + i), "success_rate": r.success, "cost_per_task": r.cost,
                 "attempts_per_task": r.attempts} for i, r in enumerate(runs)]
    return KafkaComparison(kafka=kafka, in_process=local, stats=stats, per_seed=per_seed)
