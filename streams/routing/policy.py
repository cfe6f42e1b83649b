"""The policy engine: routes (first match wins) and the classic routing patterns.

Each configured route compiles once into a matcher plus a pattern object with ``choose``; a request's
features pick the route, the pattern picks the model:

- ``fixed``: the route's one model (or the cheapest of its tier).
- ``rules``: the first rule whose ``when`` matches the features names a model or a tier.
- ``classifier``: task type -> model or tier (``task_map``), the stronger default below ``min_confidence``.
- ``cascade``: start at the cheapest rung, escalate one rung per failed outcome / failed check of the
  session (state lives in the session), start one rung up when the task confidence is low.
- ``failover``: an ordered chain; the decision carries the rest as ``fallbacks``.
- ``parallel``: N candidates (the decision's model plus ``fallbacks``); ``pick`` chooses a response.
- ``bandit``: the learned policy; below the confidence threshold sigma the frontier default is used.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streams.routing.bandit.base import BanditLike
from streams.routing.features import TIER_RANK
from streams.translation.canonical import CanonicalResponse, TextPart, ToolCallPart

if TYPE_CHECKING:
    from streams.config import ModelSettings, Settings
    from streams.routing.features import Features
    from streams.routing.sessions import SessionState
    from streams.routing.settings import RouteSettings

TIER_ORDER = TIER_RANK


@dataclass(slots=True)
class Choice:
    model: str
    reason: str
    confidence: float = 1.0
    propensity: float = 1.0
    fallbacks: list[str] = field(default_factory=list)
    # Set by the bandit pattern so an outcome can later be credited to (context, arm).
    context: dict[str, float] | None = None


# --- matching ---------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: isinstance(a, str) and str(b) in a,
}


class Matcher:
    """A compiled ``match`` mapping: every key must hold (AND). Empty matches everything."""

    __slots__ = ("_checks", "spec")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        checks: list[tuple[str, str, Any]] = []
        for key, want in spec.items():
            if isinstance(want, Mapping):
                for op, value in want.items():
                    if op not in _OPS:
                        raise ValueError(f"match.{key}: unknown operator {op!r} (use one of {sorted(_OPS)})")
                    checks.append((key, op, value))
            elif isinstance(want, list | tuple | set):
                checks.append((key, "in", list(want)))
            else:
                checks.append((key, "eq", want))
        self._checks = checks

    def __call__(self, features: Mapping[str, Any]) -> bool:
        for key, op, value in self._checks:
            have = features.get(key)
            if have is None:
                return False
            try:
                if not _OPS[op](have, value):
                    return False
            except TypeError:
                return False
        return True


# --- the model catalogue ---------------------------------------------------------------------------


class Catalog:
    """The configured models with the questions policies ask: capable? affordable? cheapest of a tier?"""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, ModelSettings] = {m.name: m for m in settings.models}
        self.by_price = sorted(self.models, key=lambda n: (self.models[n].price_out, self.models[n].price_in))
        self.expected_output = settings.routing.expected_output_tokens

    def get(self, name: str) -> ModelSettings | None:
        return self.models.get(name)

    def provider(self, name: str) -> str:
        m = self.models.get(name)
        return m.providers[0] if m is not None else ""

    def est_cost(self, name: str, f: Features) -> float:
        m = self.models[name]
        out = min(f.max_tokens or self.expected_output, self.expected_output)
        return (f.input_tokens * m.price_in + out * m.price_out) / 1e6

    def can_serve(self, name: str, f: Features) -> str | None:
        """Why ``name`` cannot take this request, or None if it can."""
        m = self.models.get(name)
        if m is None:
            return "not configured"
        caps = m.capabilities
        if f.tools_offered and not caps.tools:
            return "no tool use"
        if f.has_images and not caps.vision:
            return "no vision"
        if f.signed_thinking and not caps.thinking:
            return "history holds signed thinking"
        if f.input_tokens > m.context_window:
            return f"context {f.input_tokens} > window {m.context_window}"
        return None

    def eligible(self, names: Sequence[str], f: Features) -> tuple[list[str], str]:
        """Candidates that can serve ``f`` and respect its hints; (list, note on what the hints changed)."""
        capable = [n for n in names if self.can_serve(n, f) is None] or list(names)
        notes = []
        pool = capable
        if f.hint_tier:
            tiered = [n for n in pool if self.models[n].tier == f.hint_tier]
            if tiered:
                pool = tiered
                notes.append(f"tier hint {f.hint_tier}")
        if f.hint_max_cost_usd:
            cheap = [n for n in pool if self.est_cost(n, f) <= f.hint_max_cost_usd]
            if cheap:
                pool = cheap
                notes.append(f"cost cap ${f.hint_max_cost_usd:g}")
            else:
                pool = [min(pool, key=lambda n: self.est_cost(n, f))]
                notes.append(f"cost cap ${f.hint_max_cost_usd:g} unmet, cheapest")
        return pool, ", ".join(notes)

    def cheapest(self, names: Sequence[str], f: Features | None = None) -> str:
        if f is not None:
            return min(names, key=lambda n: self.est_cost(n, f))
        return min(names, key=lambda n: (self.models[n].price_out, self.models[n].price_in))

    def of_tier(self, tier: str, f: Features) -> str | None:
        """The cheapest capable model of ``tier`` (or of the nearest stronger tier)."""
        rank = TIER_ORDER.get(tier, 1)
        for r in range(rank, len(TIER_ORDER)):
            names = [n for n, m in self.models.items() if TIER_ORDER.get(m.tier, 1) == r]
            capable = [n for n in names if self.can_serve(n, f) is None]
            if capable:
                return self.cheapest(capable, f)
        return None

    def resolve(self, target: str, f: Features) -> str | None:
        """A model name, or a tier name resolved to its cheapest capable model."""
        if target in self.models:
            return target
        if target in TIER_ORDER:
            return self.of_tier(target, f)
        return None


# --- patterns --------------------------------------------------------------------------------------


@dataclass(slots=True)
class PolicyContext:
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
    rank = min(TIER_ORDER.get(base, 1) + lift, TIER_ORDER["frontier"])
    tier = next(t for t, r in TIER_ORDER.items() if r == rank)
    note = f"task {f.task} calls for {base}" + (f", lifted to {tier}: {why}" if lift and tier != base else "")
    return tier, note


def floor_model(arms: Sequence[str], tier: str, catalog: Catalog, f: Features) -> str | None:
    """The cheapest of ``arms`` at ``tier``, else at the nearest stronger tier, else the strongest arm."""
    want = TIER_ORDER.get(tier, 1)
    ranked: dict[int, list[str]] = {}
    for a in arms:
        m = catalog.get(a)
        if m is not None:
            ranked.setdefault(TIER_ORDER.get(m.tier, 1), []).append(a)
    for r in range(want, len(TIER_ORDER)):
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
            if target not in catalog.models and target not in TIER_ORDER:
                raise ValueError(f"routing.routes[{route.name}]: unknown model or tier {target!r}")
        if route.tier and route.tier not in TIER_ORDER:
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
                side = "above" if TIER_ORDER.get(arm_tier, 1) > TIER_ORDER.get(tier, 1) else "below"
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


@dataclass(slots=True)
class CompiledRoute:
    name: str
    match: Matcher
    pattern: Pattern
    prompt_version: str | None


def compile_routes(routes: Sequence[RouteSettings], catalog: Catalog) -> list[CompiledRoute]:
    """The configured routes plus, if none has an empty match, a default bandit route over every model."""
    from streams.routing.settings import RouteSettings

    compiled = [
        CompiledRoute(r.name, Matcher(r.match), PATTERNS[r.pattern](r, catalog), r.prompt_version) for r in routes
    ]
    if not any(not r.match for r in routes):
        default = RouteSettings(name="default", pattern="bandit")
        compiled.append(CompiledRoute("default", Matcher({}), BanditPattern(default, catalog), None))
    return compiled


def select_route(routes: Sequence[CompiledRoute], features: Mapping[str, Any]) -> CompiledRoute:
    for r in routes:
        if r.match(features):
            return r
    return routes[-1]


# --- parallel-then-pick ----------------------------------------------------------------------------


def _tool_json_score(resp: CanonicalResponse) -> int:
    """2: every tool call's arguments are valid JSON objects; 1: no tool calls; 0: a broken call."""
    calls = [p for p in resp.parts if isinstance(p, ToolCallPart)]
    if not calls:
        return 1
    for c in calls:
        try:
            if not isinstance(json.loads(c.arguments or "{}"), dict):
                return 0
        except ValueError:
            return 0
    return 2


def pick(
    responses: Sequence[CanonicalResponse | BaseException | None],
    *,
    models: Sequence[str] | None = None,
    catalog: Catalog | None = None,
) -> int:
    """Index of the best of N parallel responses: a response at all, then valid tool-call JSON, then the
    longest non-empty text, then the cheapest (by usage and the model's price when ``catalog`` is given)."""
    best_i, best_key = -1, None
    for i, r in enumerate(responses):
        if not isinstance(r, CanonicalResponse) or r.stop_reason == "error":
            key: tuple[Any, ...] = (0, 0, 0, 0, 0.0)
        else:
            text_len = sum(len(p.text) for p in r.parts if isinstance(p, TextPart))
            n_calls = sum(1 for p in r.parts if isinstance(p, ToolCallPart))
            cost = 0.0
            if catalog is not None and models is not None and i < len(models):
                m = catalog.get(models[i])
                if m is not None:
                    u = r.usage
                    cost = m.cost_usd(u.input_tokens, u.output_tokens, u.cached_input_tokens)
            key = (1, _tool_json_score(r), int(text_len > 0 or n_calls > 0), text_len, -cost)
        if best_key is None or key > best_key:
            best_i, best_key = i, key
    return best_i


def _join(reason: str, note: str) -> str:
    return f"{reason} ({note})" if note else reason


def _describe(when: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in when.items()) or "always"


def _bucket(session_id: str) -> float:
    """A stable number in [0, 1) per session, so a session either explores or not for its whole life."""
    digest = hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
