"""Routing patterns: given a request's features (and its session), which model.

Each configured route (``streams.routing.routes``) holds one pattern object; its ``choose`` picks the
model:

- ``fixed``: the route's one model (or the cheapest of its tier).
- ``rules``: the first rule whose ``when`` matches the features names a model or a tier.
- ``classifier``: task type -> model or tier (``task_map``), the stronger default below ``min_confidence``.
- ``cascade``: start at the cheapest rung, escalate one rung per failed outcome / failed check of the
  session (state lives in the session), start one rung up when the task confidence is low.
- ``failover``: an ordered chain; the decision carries the rest as ``fallbacks``.
- ``parallel``: N candidates (the decision's model plus ``fallbacks``); ``streams.routing.parallel.pick``
  chooses a response.
- ``bandit``: the learned policy; below the confidence threshold sigma the frontier default is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streams.routing.bandit.base import BanditLike
from streams.routing.features import TIER_RANK
from streams.routing.matching import Matcher

if TYPE_CHECKING:
    from streams.routing.catalog import Catalog
    from streams.routing.features import Features
    from streams.routing.sessions import SessionState
    from streams.routing.settings import RouteSettings


@dataclass(slots=True)
class Choice:
    """A pattern's pick: the model, why, and what off-policy evaluation needs to credit it."""

    model: str
    reason: str
    confidence: float = 1.0
    propensity: float = 1.0
    fallbacks: list[str] = field(default_factory=list)
    # Set by the bandit pattern so an outcome can later be credited to (context, arm).
    context: dict[str, float] | None = None


@dataclass(slots=True)
class PolicyContext:
    """What every pattern may read besides the request: the catalogue, defaults and the learned policy."""

    catalog: Catalog
    frontier_default: str
    sigma: float
    bandit: BanditLike | None
    explore_below_sigma: float = 0.0
    # routing.task_tiers: the tier each task type calls for before any outcome (the prior).
    task_tiers: Mapping[str, str] = field(default_factory=dict)


def struggle(f: Features, session: SessionState | None) -> tuple[int, str]:
    """How many tiers a session's own signals lift the floor, and why: a failed outcome, the agent
    looping or repeating failing tool calls (stage ``stuck``), tests failing again after an edit."""
    level, why = 0, []
    failures = session.failures if session is not None else 0
    if failures:
        level += min(failures, 2)
        why.append(f"{failures} failed outcome(s)/check(s)")
    if f.stage == "stuck" and not failures:
        level += 1
        why.append("the agent is looping")
    if f.stage == "failing_tests" and session is not None and session.failing_tests_seen > 1 and not failures:
        level += 1
        why.append("tests failing again")
    return level, ", ".join(why)


def prior_tier(f: Features, session: SessionState | None, ctx: PolicyContext) -> tuple[str | None, str]:
    """The tier the task type calls for, lifted by the session's struggle; (None, "") without a prior."""
    base = ctx.task_tiers.get(f.task)
    if base is None:
        return None, ""
    lift, why = struggle(f, session)
    rank = min(TIER_RANK.get(base, 1) + lift, TIER_RANK["frontier"])
    tier = next(t for t, r in TIER_RANK.items() if r == rank)
    note = f"task {f.task} calls for {base}" + (f", lifted to {tier}: {why}" if lift and tier != base else "")
    return tier, note


def floor_model(arms: Sequence[str], tier: str, catalog: Catalog, f: Features) -> str | None:
    """The cheapest of ``arms`` at ``tier``, else at the nearest stronger tier, else the strongest arm."""
    want = TIER_RANK.get(tier, 1)
    ranked: dict[int, list[str]] = {}
    for a in arms:
        m = catalog.get(a)
        if m is not None:
            ranked.setdefault(TIER_RANK.get(m.tier, 1), []).append(a)
    for r in range(want, len(TIER_RANK)):
        if ranked.get(r):
            return catalog.cheapest(ranked[r], f)
    for r in range(want - 1, -1, -1):
        if ranked.get(r):
            return catalog.cheapest(ranked[r], f)
    return None


class Pattern:
    name = "fixed"

    def __init__(self, route: RouteSettings, catalog: Catalog) -> None:
        self.route = route
        for target in [r.model for r in route.rules if r.model] + list(route.task_map.values()):
            if target not in catalog.models and target not in TIER_RANK:
                raise ValueError(f"routing.routes[{route.name}]: unknown model or tier {target!r}")
        if route.tier and route.tier not in TIER_RANK:
            raise ValueError(f"routing.routes[{route.name}].tier: unknown tier {route.tier!r}")

    def pool(self, ctx: PolicyContext) -> list[str]:
        return list(self.route.models) or list(ctx.catalog.by_price)

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        route = self.route
        if route.models:
            pool, note = ctx.catalog.eligible(route.models, f)
            return Choice(pool[0], _join(f"fixed model {pool[0]}", note))
        if route.tier:
            model = ctx.catalog.of_tier(route.tier, f) or ctx.frontier_default
            return Choice(model, f"cheapest capable {route.tier} model")
        return Choice(ctx.frontier_default, "no model configured on the route: frontier default")


class RulesPattern(Pattern):
    name = "rules"

    def __init__(self, route: RouteSettings, catalog: Catalog) -> None:
        super().__init__(route, catalog)
        self._rules = [(Matcher(r.when), r.model or r.tier or "", r.when) for r in route.rules]

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        fd = f.to_dict()
        for i, (match, target, when) in enumerate(self._rules):
            if match(fd):
                model = ctx.catalog.resolve(target, f)
                if model is not None:
                    return Choice(model, f"rule {i} ({_describe(when)}) -> {target}")
        fallback = super().choose(f, session, ctx)
        fallback.reason = "no rule matched; " + fallback.reason
        return fallback


class ClassifierPattern(Pattern):
    name = "classifier"

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        tm = self.route.task_map
        if f.task_confidence < self.route.min_confidence:
            target = tm.get("low_confidence") or ctx.frontier_default
            why = f"task {f.task} at confidence {f.task_confidence:.2f} < {self.route.min_confidence:.2f}"
        else:
            target = tm.get(f.task) or tm.get("default") or self.route.tier or ctx.frontier_default
            why = f"task {f.task} ({f.task_source}, confidence {f.task_confidence:.2f})"
        model = ctx.catalog.resolve(target, f) or ctx.frontier_default
        return Choice(model, f"{why} -> {target}", confidence=f.task_confidence)


class CascadePattern(Pattern):
    name = "cascade"

    def ladder(self, f: Features, ctx: PolicyContext) -> list[str]:
        names = self.route.models or ctx.catalog.by_price
        capable = [n for n in names if ctx.catalog.can_serve(n, f) is None]
        return capable or list(names)

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        ladder = self.ladder(f, ctx)
        level = session.cascade_level if session is not None else 0
        why = f"cascade rung {level}"
        if level == 0 and f.task_confidence < self.route.min_confidence:
            level = 1
            why = f"cascade rung 1 (task confidence {f.task_confidence:.2f} < {self.route.min_confidence:.2f})"
        elif level and session is not None:
            why += f" after {session.failures} failed outcome(s)/check(s)"
        rung = min(level, len(ladder) - 1)
        return Choice(ladder[rung], f"{why} -> {ladder[rung]}", fallbacks=ladder[rung + 1 :])


class FailoverPattern(Pattern):
    name = "failover"

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        chain = self.pool(ctx)
        capable = [n for n in chain if ctx.catalog.can_serve(n, f) is None] or chain
        return Choice(capable[0], f"failover chain {' > '.join(capable)}", fallbacks=capable[1:])


class ParallelPattern(Pattern):
    name = "parallel"

    def choose(self, f: Features, session: SessionState | None, ctx: PolicyContext) -> Choice:
        pool, note = ctx.catalog.eligible(self.pool(ctx), f)
        n = min(self.route.parallel_n, len(pool))
        picked = pool[:n]
        return Choice(
            picked[0],
            _join(f"parallel: run {', '.join(picked)} and pick the best response", note),
            fallbacks=picked[1:],
        )


class BanditPattern(Pattern):
    """The learned policy, guarded by the task-type prior.

    The bandit's pick stands when it is of the tier the task calls for (``task_tiers``, lifted when
    the session struggles), or when it is confident (``sigma``) that leaving that tier pays: a
    cheaper model than the task calls for (the safety question) or a dearer one (the cost
    question). An unconfident pick off the prior's tier gets the prior's model: sigma guards
    deviations from the prior, not every non-frontier choice. Sessions that explore below sigma
    follow the bandit. Task types without a prior fall back to the frontier default, as before.
    """

    name = "bandit"

    def choose(
        self, f: Features, session: SessionState | None, ctx: PolicyContext, context: dict[str, float] | None = None
    ) -> Choice:
        """``context``: the bandit's context when it is known already (off-policy evaluation replays
        the logged one); by default the request's features."""
        arms, note = ctx.catalog.eligible(self.pool(ctx), f)
        default = ctx.frontier_default
        tier, why = prior_tier(f, session, ctx)
        floor = floor_model(arms, tier, ctx.catalog, f) if tier is not None else None
        if ctx.bandit is None:
            if floor is not None:
                return Choice(floor, _join(f"no learned policy loaded: {why} -> {floor}", note), confidence=0.0)
            return Choice(default, "no learned policy loaded: frontier default", confidence=0.0)
        context = context if context is not None else f.vector()
        arm, propensity, confidence = ctx.bandit.predict_one(context, arms)
        picked = f"bandit picked {arm} (confidence {confidence:.2f}, propensity {propensity:.2f})"
        if floor is not None and tier is not None:
            arm_tier = ctx.catalog.models[arm].tier if arm in ctx.catalog.models else "standard"
            if arm == floor or arm_tier == tier:
                return Choice(arm, _join(f"{picked}; {why}: prior holds", note), confidence=confidence,
                              propensity=propensity, context=context)
            if confidence >= ctx.sigma:
                side = "above" if TIER_RANK.get(arm_tier, 1) > TIER_RANK.get(tier, 1) else "below"
                return Choice(arm, _join(f"{picked}; {why}: {side} it at confidence >= sigma {ctx.sigma:.2f}", note),
                              confidence=confidence, propensity=propensity, context=context)
            fallback, fallback_why = floor, f"{why}: prior's {floor}"
        else:
            if confidence >= ctx.sigma:
                return Choice(arm, _join(picked, note), confidence=confidence, propensity=propensity, context=context)
            fallback, fallback_why = default, f"frontier default {default}"
        explore = ctx.explore_below_sigma
        if session is not None and explore > 0 and _bucket(session.session_id) < explore:
            return Choice(
                arm,
                _join(f"exploring: bandit picked {arm} at confidence {confidence:.2f} < sigma {ctx.sigma:.2f} "
                      f"(this session is in the {explore:.0%} that explore)", note),
                confidence=confidence,
                propensity=propensity * explore,
                context=context,
            )
        return Choice(
            fallback,
            _join(f"bandit picked {arm} at confidence {confidence:.2f} < sigma {ctx.sigma:.2f}: {fallback_why}", note),
            confidence=confidence,
            propensity=1.0,
            context=context,
        )


PATTERNS: dict[str, type[Pattern]] = {
    "fixed": Pattern,
    "rules": RulesPattern,
    "classifier": ClassifierPattern,
    "cascade": CascadePattern,
    "failover": FailoverPattern,
    "parallel": ParallelPattern,
    "bandit": BanditPattern,
}


def _join(reason: str, note: str) -> str:
    return f"{reason} ({note})" if note else reason


def _describe(when: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in when.items()) or "always"


def _bucket(session_id: str) -> float:
    """A stable number in [0, 1) per session, so a session either explores or not for its whole life."""
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
