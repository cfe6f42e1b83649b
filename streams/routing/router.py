"""The router: features -> route -> pattern -> session stickiness -> Decision, in well under a millisecond.

One object, built from Settings; no global state. The gateway calls ``decide`` per request (and the
decide-only ``POST /v1/route``), ``record_outcome`` when a session's tests pass or fail, and
``set_policy`` when a new learned-policy snapshot arrives.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from streams.config import Settings
from streams.routing.bandit.base import BanditLike
from streams.routing.cache import DecisionCache, signature
from streams.routing.catalog import Catalog
from streams.routing.classifier import EmbeddingClassifier, RuleClassifier, TaskClassifier, load_labels
from streams.routing.client_detection import lower_case_headers
from streams.routing.decision import MODEL_OVERRIDE_HEADER, OVERRIDE, PASSTHROUGH, Decision
from streams.routing.extractor import FeatureExtractor
from streams.routing.features import Features
from streams.routing.patterns import BanditPattern, CascadePattern, Choice, PolicyContext
from streams.routing.routes import CompiledRoute, compile_routes, select_route
from streams.routing.sessions import SessionState, SessionStore, session_identity, subagent_key, switch_verdict
from streams.translation.canonical import CanonicalRequest

AUTO_MODEL = "router/auto"
AUTO_ALIASES = frozenset({AUTO_MODEL, "router-auto"})  # aider and others cannot always send a slash


class Router:
    def __init__(
        self,
        settings: Settings,
        bandit: BanditLike | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        classifier: TaskClassifier | None = None,
    ) -> None:
        self.settings = settings
        rs = settings.routing
        self.catalog = Catalog(settings)
        default = settings.frontier_default()
        if default is None:
            raise ValueError("routing: no models configured, so there is no frontier default")
        self.frontier_default = default
        self.routes: list[CompiledRoute] = compile_routes(rs.routes, self.catalog)
        self.bandit = bandit
        self.policy_version = int(getattr(bandit, "version", 0) or 0)
        self.clock = clock
        self.wall_clock = wall_clock
        self.extractor = FeatureExtractor()
        self.classifier: TaskClassifier = classifier or self._make_classifier()
        self.sessions = SessionStore(rs.max_sessions, rs.session_ttl_s, clock)
        self.cache = DecisionCache(rs.decision_cache_size, rs.decision_cache_ttl_s, clock)
        self._configured = frozenset(self.catalog.models)
        self._auto_patterns = tuple(p for p in rs.auto_models if p not in AUTO_ALIASES)

    def _make_classifier(self) -> TaskClassifier:
        rules = RuleClassifier()
        if self.settings.routing.classifier != "embedding":
            return rules
        from streams.routing.embedding import load_embedder

        clf = EmbeddingClassifier(load_embedder(), fallback=rules)
        if self.settings.routing.embedding_labels:
            clf.fit(load_labels(self.settings.routing.embedding_labels))
        return clf

    # --- public API --------------------------------------------------------------------------------

    def is_auto(self, model_name: str) -> bool:
        """``router/auto`` (or ``router-auto``) or a configured glob; a configured model's exact name is never auto."""
        if model_name in AUTO_ALIASES:
            return True
        if model_name in self._configured:
            return False
        return any(fnmatch.fnmatchcase(model_name, p) for p in self._auto_patterns)

    def set_policy(self, snapshot: Any, version: int | None = None) -> None:
        """Hot-swap the learned policy: a bandit object, or the bytes of a bandit snapshot."""
        if isinstance(snapshot, bytes | bytearray | memoryview):
            from streams.routing.bandit import ContextualBandit

            snapshot = ContextualBandit.restore(bytes(snapshot))
        if not isinstance(snapshot, BanditLike):
            raise TypeError(f"set_policy: {type(snapshot).__name__} has no predict_one/learn_one")
        keep = getattr(snapshot, "keep_decision_state", None)
        if keep is not None and self.bandit is not None:
            keep(self.bandit)
        self.bandit = snapshot
        if version is None:
            version = int(getattr(snapshot, "version", self.policy_version + 1) or 0)
        self.policy_version = version
        self.cache.clear()  # decisions of the old policy must not outlive it

    def record_outcome(
        self,
        session_id: str,
        success: bool,
        *,
        cost_usd: float | None = None,
        kind: str = "tests",
        learn: bool = False,
    ) -> bool:
        """A session's outcome (tests passed/failed, a check failed). A failure escalates its cascade one
        rung and lets the next safe boundary switch to a stronger model. With ``learn`` the bandit is
        updated in-process (the learner agent does this from Kafka, so it is off by default).
        ``kind`` (tests, check, ...) is informational: every failed kind escalates alike.
        The session's subagents get the same outcome: their work is part of the session's task.
        Returns False for an unknown/expired session."""
        parent = self.sessions.get(session_id)
        if parent is None:
            return False
        states = [parent, *(c for k in parent.subagents if (c := self.sessions.get(k)) is not None)]
        cost_share = float(cost_usd or 0.0) / len(states)  # the session's cost, spread over who spent it
        for s in states:
            s.epoch += 1
            if success:
                s.successes += 1
                s.escalation_pending = False
            else:
                s.failures += 1
                s.cascade_level += 1
                s.escalation_pending = True
            if learn and self.bandit is not None and s.last_context is not None and s.last_arm:
                b = self.settings.routing.bandit
                reward = b.alpha * float(success) - b.beta * cost_share
                self.bandit.learn_one(s.last_context, s.last_arm, reward)
        return True

    def decide(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str,
               session_id: str | None = None) -> Decision:
        """``session_id``: the caller's ``session_identity`` (with its key); computed here when absent."""
        h = lower_case_headers(headers)
        f = self.extractor.extract(req, h, requested_model=requested_model)
        sid = session_id or session_identity(h, req)
        session = self.sessions.touch(sid)
        state_key = sid
        if f.subagent:
            # A subagent (Claude Code's Task tool) shares the session id but not the conversation: it is
            # routed on its own (own task, own model) and its decisions still name the parent session.
            session = self.sessions.subagent(session, f.subagent)
            state_key = subagent_key(sid, f.subagent)

        if not self.is_auto(requested_model) and requested_model in self._configured:
            return self._named(f, session, requested_model)

        self._classify(f)
        forced = h.get(MODEL_OVERRIDE_HEADER, "").strip()
        if forced in self._configured:
            # Before the cache: a cached pick must not win over what the caller forces.
            return self._forced(f, session, forced)
        fd = f.to_dict()
        route = select_route(self.routes, fd)
        self._note_stuck(f, session, route)

        key = None
        if self.cache.enabled:
            key = (state_key, session.epoch, self.policy_version, signature(f, route.name))
            hit = self.cache.get(key)
            if hit is not None:
                session.requests += 1
                d = self._finish(
                    hit.model,
                    hit.policy,
                    hit.reason,
                    hit.confidence,
                    hit.propensity,
                    list(hit.fallbacks),
                    f,
                    fd,
                    session,
                    route,
                    cached=True,
                )
                if "context" in hit.features:
                    # Credited like the decision it repeats: to the context the bandit saw then
                    # (attempt included), not to one rebuilt from this request's features.
                    d.features["context"] = dict(hit.features["context"])
                return d

        bandit_settings = self.settings.routing.bandit
        ctx = PolicyContext(self.catalog, self.frontier_default, bandit_settings.sigma, self.bandit,
                            bandit_settings.explore_below_sigma, self.settings.routing.task_tiers)
        choice = self._choose(route, f, session, ctx)
        model, reason = self._sticky(f, session, choice)
        session.requests += 1
        if choice.context is not None:
            session.last_context, session.last_arm = choice.context, model
        d = self._finish(
            model,
            route.pattern.name,
            reason,
            choice.confidence,
            choice.propensity,
            [m for m in choice.fallbacks if m != model],
            f,
            fd,
            session,
            route,
        )
        if choice.context is not None:
            # The learner credits outcomes to exactly the context the bandit saw (attempt included).
            d.features["context"] = dict(choice.context)
        if key is not None:
            self.cache.put((state_key, session.epoch, self.policy_version, key[3]), d)
        return d

    # --- steps -------------------------------------------------------------------------------------

    def _classify(self, f: Features) -> None:
        if f.hint_task:
            f.task, f.task_confidence, f.task_source = f.hint_task, 1.0, "hint"
            if f.task_text and not f.background:
                self.classifier.learn_one(f.task_text, f.hint_task)  # a client's label teaches the classifier
            return
        f.task, f.task_confidence = self.classifier.predict_one(f.task_text, f)
        f.task_source = getattr(self.classifier, "name", "classifier")

    def _note_stuck(self, f: Features, session: SessionState, route: CompiledRoute) -> None:
        # Entering a loop (same tool call repeated) is a failed check: a cascade escalates once per episode.
        stuck = f.stage == "stuck"
        if f.stage == "failing_tests" and session.last_stage != "failing_tests":
            session.failing_tests_seen += 1  # a new failing run, not the same one seen again
        session.last_stage = f.stage
        if stuck and not session.stuck and isinstance(route.pattern, CascadePattern | BanditPattern):
            session.failures += 1
            session.cascade_level += 1
            session.escalation_pending = True
            session.epoch += 1
        session.stuck = stuck

    def _choose(self, route: CompiledRoute, f: Features, session: SessionState, ctx: PolicyContext) -> Choice:
        if isinstance(route.pattern, BanditPattern) and session.failures:
            # The bandit's own cascade reads the attempt number from the context.
            choice = route.pattern.choose(f, session, ctx)
            if choice.context is not None:
                choice.context["attempt"] = float(session.failures + 1)
            return choice
        return route.pattern.choose(f, session, ctx)

    def _sticky(self, f: Features, session: SessionState, choice: Choice) -> tuple[str, str]:
        if f.background:
            # Claude Code's side calls (titles, summaries) share the session id but not its conversation:
            # they neither stick to the session's model nor move it.
            return choice.model, choice.reason
        current = session.model
        if not current or current == choice.model or not self.settings.routing.sticky_sessions:
            if current and current != choice.model:
                session.epoch += 1
            session.escalation_pending = False
            session.model = choice.model
            return choice.model, choice.reason
        escalation = session.escalation_pending
        verdict = switch_verdict(
            f,
            session,
            choice.model,
            self.catalog,
            escalation=escalation,
            expected_remaining=self.settings.routing.expected_remaining_requests,
        )
        if verdict.allowed:
            session.model = choice.model
            session.escalation_pending = False
            session.epoch += 1
            return choice.model, f"{choice.reason}; switched from {current}: {verdict.reason}"
        if self.catalog.can_serve(current, f) is not None:
            # The session's model cannot take this request at all (e.g. the context outgrew it).
            session.model = choice.model
            session.epoch += 1
            return choice.model, f"{choice.reason}; left {current}: {self.catalog.can_serve(current, f)}"
        return current, f"session keeps {current} (policy chose {choice.model}; no switch: {verdict.reason})"

    def _named(self, f: Features, session: SessionState, model: str) -> Decision:
        f.task_source = "none"
        session.requests += 1
        session.model = model
        fd = f.to_dict()
        return self._finish(
            model, PASSTHROUGH, f"client asked for configured model {model}", 1.0, 1.0, [], f, fd, session, None
        )

    def _forced(self, f: Features, session: SessionState, model: str) -> Decision:
        """The model the caller forced with ``x-router-model``. The session moves to it (its history
        is now that model's), except for a background call, which never moves the session."""
        session.requests += 1
        if not f.background and session.model != model:
            session.model = model
            session.epoch += 1
        reason = f"override: {MODEL_OVERRIDE_HEADER} header forces {model} (task {f.task})"
        return self._finish(model, OVERRIDE, reason, 1.0, 1.0, [], f, f.to_dict(), session, None, route_name=OVERRIDE)

    def _finish(
        self,
        model: str,
        policy: str,
        reason: str,
        confidence: float,
        propensity: float,
        fallbacks: list[str],
        f: Features,
        fd: dict[str, Any],
        session: SessionState,
        route: CompiledRoute | None,
        *,
        cached: bool = False,
        route_name: str | None = None,
    ) -> Decision:
        did = str(uuid.uuid4())
        session.last_decision_id = did
        return Decision(
            decision_id=did,
            session_id=session.session_id,
            model=model,
            provider=self.catalog.provider(model),
            policy=policy,
            policy_version=self.policy_version,
            reason=reason,
            confidence=float(confidence),
            propensity=float(propensity),
            features=fd,
            route=route.name if route is not None else route_name or PASSTHROUGH,
            prompt_version=route.prompt_version if route is not None else None,
            fallbacks=fallbacks,
            cached=cached,
            ts_ms=int(self.wall_clock() * 1000),
        )
