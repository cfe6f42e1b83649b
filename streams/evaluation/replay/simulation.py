"""One online pass over an outcome matrix: the policy pays for, and learns from, only the cells it picks.

For each task the policy picks a model and *pays* for that one cell of the matrix (success and
cost). If the attempt failed and attempts remain, the session escalates: the same policy picks again
among the models not yet tried, with the attempt number and the failed models in its context. Costs
add across attempts; the session succeeds if any attempt does.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streams.evaluation.datasets import OutcomeMatrix, task_context
from streams.routing.bandit import ATTEMPT_KEY, ATTEMPTS_LEFT_KEY

PASS_THRESHOLD = 0.5  # a graded score below this counts as a failed attempt (worth escalating)


class ReplayPolicy(Protocol):
    def predict_one(self, context: dict[str, float], arms: list[str]) -> tuple[str, float, float]: ...

    def learn_outcome(self, context: dict[str, float], arm: str, success: float, cost_usd: float) -> None: ...


def escalates(policy: ReplayPolicy, context: dict[str, float], arms: list[str]) -> bool:
    """Ask the policy whether a failed task is worth another attempt (policies without a stop rule
    always retry, up to ``max_attempts``)."""
    ask = getattr(policy, "should_escalate", None)
    return True if ask is None else bool(ask(context, arms))


class PaidOutcomes:
    """The only way the simulation reads the matrix: one (task, model) cell per paid attempt."""

    def __init__(self, matrix: OutcomeMatrix) -> None:
        self._success = matrix.success
        self._cost = matrix.cost
        self.reads: list[tuple[int, int]] = []
        self.peeks = 0

    def pay(self, task: int, model: int) -> tuple[float, float]:
        self.reads.append((task, model))
        return float(self._success[task, model]), float(self._cost[task, model])

    def peek(self, task: int, model: int) -> tuple[float, float]:
        """A cell read without paying for it: only the full-information ceiling does this."""
        self.peeks += 1
        return float(self._success[task, model]), float(self._cost[task, model])


@dataclass(slots=True)
class Attempt:
    model: str
    success: float
    cost_usd: float
    propensity: float
    confidence: float


@dataclass(slots=True)
class Session:
    task: int
    attempts: list[Attempt]

    @property
    def success(self) -> float:
        return max((a.success for a in self.attempts), default=0.0)

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)


def attempt_context(base: dict[str, float], attempt: int, failed: Sequence[str], max_attempts: int) -> dict[str, float]:
    """The task's context plus what the cascade knows: attempt number and which models failed."""
    ctx = dict(base)
    ctx[ATTEMPT_KEY] = float(attempt)
    ctx[ATTEMPTS_LEFT_KEY] = float(max_attempts - attempt)
    for m in failed:
        ctx[f"failed:{m}"] = 1.0
    return ctx


@dataclass(slots=True)
class Pick:
    """One attempt's decision: where it was taken (context, the arms left) and what the policy said."""

    context: dict[str, float]
    arms: list[str]
    arm: str
    propensity: float
    confidence: float


class TaskAttempts:
    """One task's attempts, decided one at a time: the loop of every replay, in process or through
    the broker, which differ only in how the policy learns and where it comes from.

        attempts = TaskAttempts(t, contexts[t], matrix.models, max_attempts)
        while (pick := attempts.decide(policy)) is not None:
            success, cost = outcomes.pay(t, ...)
            attempts.record(pick, success, cost, told=success)
        sessions.append(attempts.session)
    """

    def __init__(self, task: int, context: dict[str, float], models: Sequence[str], max_attempts: int) -> None:
        self.base = context
        self.models = models
        self.max_attempts = max_attempts
        self.tried: list[str] = []
        self.session = Session(int(task), [])
        self.done = max_attempts < 1

    def decide(self, policy: ReplayPolicy) -> Pick | None:
        """The next attempt's pick, or None when the task is done (told success, no attempts or models
        left, or the policy's stop rule says a failed task is not worth another attempt)."""
        if self.done:
            return None
        k = len(self.tried) + 1
        arms = [m for m in self.models if m not in self.tried]
        ctx = attempt_context(self.base, k, self.tried, self.max_attempts)
        if not arms or (k > 1 and not escalates(policy, ctx, arms)):
            self.done = True
            return None
        arm, propensity, confidence = policy.predict_one(ctx, arms)
        return Pick(ctx, arms, arm, propensity, confidence)

    def record(self, pick: Pick, success: float, cost_usd: float, *, told: float) -> None:
        """The attempt's true outcome (scored) and what the router was told (stops the cascade)."""
        self.session.attempts.append(Attempt(pick.arm, success, cost_usd, pick.propensity, pick.confidence))
        self.tried.append(pick.arm)
        if told >= PASS_THRESHOLD or len(self.tried) >= self.max_attempts:
            self.done = True


def simulate(
    matrix: OutcomeMatrix,
    policy: ReplayPolicy,
    outcomes: PaidOutcomes,
    *,
    order: Sequence[int],
    max_attempts: int,
    contexts: Sequence[dict[str, float]] | None = None,
    label_noise: float = 0.0,
    noise_seed: int = 0,
    full_information: bool = False,
) -> list[Session]:
    """Run one pass over the tasks in ``order``; the policy learns only from cells it paid for.

    ``label_noise``: the share of attempts whose outcome the router is told wrong (a flaky test
    suite, an agent's own tests that miss the bug). The router learns and stops its cascade on
    what it is told; the session is scored on the truth.

    ``full_information``: the policy also learns every other model's outcome at each attempt,
    without paying for it (``streams.evaluation.replay.ceilings``: not a router, a ceiling).
    """
    contexts = contexts if contexts is not None else [task_context(t) for t in matrix.tasks]
    model_index = {m: j for j, m in enumerate(matrix.models)}
    flips = np.random.default_rng([noise_seed, 0x5EED]) if label_noise > 0 else None
    learn_outcome: Any = policy.learn_outcome
    timed = "ts" in inspect.signature(learn_outcome).parameters  # policies that forget take a clock

    def told(success: float) -> float:
        return 1.0 - success if flips is not None and flips.random() < label_noise else success

    sessions: list[Session] = []
    for step, t in enumerate(order):
        attempts = TaskAttempts(t, contexts[t], matrix.models, max_attempts)
        while (pick := attempts.decide(policy)) is not None:
            success, cost = outcomes.pay(t, model_index[pick.arm])
            seen = [(pick.arm, told(success), cost)]
            if full_information:
                for other in pick.arms:
                    if other != pick.arm:
                        s_other, c_other = outcomes.peek(t, model_index[other])
                        seen.append((other, told(s_other), c_other))
            for m, s_seen, c_seen in seen:
                if timed:
                    learn_outcome(pick.context, m, s_seen, c_seen, ts=float(step))  # the task's position is the clock
                else:
                    learn_outcome(pick.context, m, s_seen, c_seen)
            attempts.record(pick, success, cost, told=seen[0][1])
        sessions.append(attempts.session)
    return sessions


def swap_skills(matrix: OutcomeMatrix, order: Sequence[int], a: str, b: str, *, at: int) -> OutcomeMatrix:
    """Drift: the matrix in which models ``a`` and ``b`` trade their outcomes for every task that
    arrives at position ``at`` or later of ``order`` (costs stay: a model does not change price)."""
    ia, ib = matrix.models.index(a), matrix.models.index(b)
    success = matrix.success.copy()
    late = np.asarray(order[at:], dtype=np.intp)
    success[late, ia], success[late, ib] = matrix.success[late, ib], matrix.success[late, ia]
    return OutcomeMatrix(f"{matrix.name}-drift", matrix.tasks, matrix.models, success, matrix.cost, matrix.calls,
                         matrix.meta)
