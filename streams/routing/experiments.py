"""Canary and shadow experiments: a candidate routing policy next to the configured (control) one.

- Canary: a deterministic share of task-*sessions* (a hash of the session id and a salt, so a session
  never changes arm) is decided by the candidate; the Decision says ``variant="canary"``.
- Shadow: the control decides and is served; the candidate decides too, without acting, and its choice
  is written on the served Decision as ``shadow_model`` / ``shadow_policy``. The candidate reuses the
  features the control just extracted (the costliest step on a 76 KB request), and by default runs
  right after ``decide`` returns (``loop.call_soon``), i.e. while the request is on its way upstream,
  so it does not add to the router's overhead. Without a running event loop it runs inline.

``ExperimentRouter`` offers the Router interface (``decide``, ``is_auto``, ``record_outcome``,
``set_policy``; anything else is the control's), so the gateway and agents use it unchanged.
``build_router(settings, bandit)`` returns a plain Router when no experiment is configured.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.config import ConfigError, Settings, read_yaml_mapping
from streams.routing.client_detection import lower_case_headers
from streams.routing.decision import PASSTHROUGH, Decision
from streams.routing.extractor import FeatureExtractor
from streams.routing.features import Features
from streams.routing.router import Router
from streams.routing.sessions import session_identity
from streams.routing.settings import CandidateSettings, RoutingSettings
from streams.translation.canonical import CanonicalRequest

if TYPE_CHECKING:
    from streams.routing.bandit.base import BanditLike

log = logging.getLogger(__name__)

CONTROL = "control"
CANARY = "canary"
_SCALE = float(1 << 64)


def session_bucket(session_id: str, salt: str) -> float:
    """A stable, uniform number in [0, 1) for a session: the same on every worker and every restart."""
    digest = hashlib.blake2b(f"{salt}\x00{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


# --- candidate settings ----------------------------------------------------------------------------


def _candidate_routing(base: RoutingSettings, spec: CandidateSettings | str | Path) -> dict[str, Any]:
    """The candidate's routing section as a dict: the control's, with the candidate's parts on top."""
    raw = base.model_dump()
    raw["canary"], raw["shadow"] = {}, {}  # a candidate never runs experiments of its own
    if isinstance(spec, str | Path) or spec.config is not None:
        path = Path(spec if isinstance(spec, str | Path) else str(spec.config))
        loaded = read_yaml_mapping(path, "candidate config")
        # A full weave-router.yaml (only its routing section counts: models and providers are the
        # ones this service serves) or a bare routing section.
        section = loaded.get("routing", loaded)
        if not isinstance(section, dict):
            raise ConfigError(f"candidate config {path}: routing must be a mapping")
        section = {k: v for k, v in section.items() if k not in ("canary", "shadow")}
        return {**raw, **section}
    if spec.routes is not None:
        raw["routes"] = [r.model_dump() for r in spec.routes]
    if spec.default_model:
        raw["default_model"] = spec.default_model
    if spec.bandit is not None:
        raw["bandit"] = spec.bandit.model_dump()
    return raw


def candidate_settings(settings: Settings, spec: CandidateSettings | str | Path) -> Settings:
    """Full Settings for a candidate Router: the same models and providers, the candidate's routing.

    Validated like the main config (unknown models in routes fail here, at start, naming the field).
    """
    from pydantic import ValidationError

    from streams.config import _format_error

    raw = settings.model_dump()
    raw["routing"] = _candidate_routing(settings.routing, spec)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        name = spec if isinstance(spec, str | Path) else spec.config or spec.name
        raise ConfigError(f"candidate {name}: {_format_error(exc)}") from None


def candidate_router(settings: Settings, spec: CandidateSettings | str | Path, bandit: BanditLike | None) -> Router:
    """A Router for the candidate. It shares the control's learned policy (``bandit``) unless its bandit
    settings change how rewards are weighed or arms explored; then it gets a fresh one of its own."""
    cs = candidate_settings(settings, spec)
    own, base = cs.routing.bandit, settings.routing.bandit
    same = (own.alpha, own.beta, own.exploration, own.seed) == (base.alpha, base.beta, base.exploration, base.seed)
    if not same:
        from streams.routing.bandit import bandit_for

        bandit = bandit_for(cs)
    return Router(cs, bandit=bandit)


# --- feature reuse ---------------------------------------------------------------------------------


class _SharedExtraction:
    """The control's extractor, remembering what it extracted for the request being decided, so the
    shadow candidate gets a copy instead of parsing the same 76 KB again."""

    __slots__ = ("inner", "last")

    def __init__(self, inner: FeatureExtractor) -> None:
        self.inner = inner
        self.last: tuple[CanonicalRequest, str, Features] | None = None

    def extract(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str) -> Features:
        f = self.inner.extract(req, headers, requested_model=requested_model)
        self.last = (req, requested_model, copy.copy(f))  # before the router classifies it in place
        return f

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "shared", "last"):
            raise AttributeError(name)  # not yet set (unpickling): no recursion through self.inner
        return getattr(self.inner, name)


class _ReusedExtraction:
    """The candidate's extractor: the control's features of the same request when it has them."""

    __slots__ = ("inner", "shared")

    def __init__(self, inner: FeatureExtractor, shared: _SharedExtraction) -> None:
        self.inner = inner
        self.shared = shared

    def extract(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str) -> Features:
        last = self.shared.last
        if last is not None and last[0] is req and last[1] == requested_model:
            return copy.copy(last[2])
        return self.inner.extract(req, headers, requested_model=requested_model)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "shared", "last"):
            raise AttributeError(name)  # not yet set (unpickling): no recursion through self.inner
        return getattr(self.inner, name)


# --- the router ------------------------------------------------------------------------------------


class ExperimentRouter:
    """Control and candidate Routers behind the Router interface (see the module doc)."""

    def __init__(
        self,
        control: Router,
        candidate: Router | None,
        canary_fraction: float = 0.0,
        shadow: bool = False,
        *,
        name: str = "candidate",
        salt: str | None = None,
        shadow_fraction: float = 1.0,
        shadow_inline: bool = False,
    ) -> None:
        if not 0.0 <= canary_fraction <= 1.0:
            raise ValueError(f"canary_fraction must be in [0, 1], got {canary_fraction}")
        if candidate is None and (canary_fraction > 0 or shadow):
            raise ValueError("a canary or shadow experiment needs a candidate router")
        self.control = control
        self.candidate = candidate
        self.canary_fraction = float(canary_fraction)
        self.shadow = bool(shadow)
        self.name = name
        self.salt = name if salt is None else salt
        self.shadow_fraction = float(shadow_fraction)
        self.shadow_inline = shadow_inline
        self.shadow_errors = 0
        # Both share one learned policy when the candidate was built on the control's bandit.
        self._shared_policy = candidate is not None and candidate.bandit is control.bandit
        self._extraction: _SharedExtraction | None = None
        if candidate is not None and shadow:
            self._extraction = _SharedExtraction(control.extractor)
            control.extractor = self._extraction  # type: ignore[assignment]
            candidate.extractor = _ReusedExtraction(candidate.extractor, self._extraction)  # type: ignore[assignment]

    # --- arms --------------------------------------------------------------------------------------

    def variant(self, session_id: str) -> str:
        """``canary`` or ``control``: fixed for a session (hash of its id), whatever its requests."""
        if self.canary_fraction <= 0.0 or self.candidate is None:
            return CONTROL
        return CANARY if session_bucket(session_id, self.salt) < self.canary_fraction else CONTROL

    def _shadowed(self, session_id: str) -> bool:
        if not self.shadow:
            return False
        # A different salt from the canary split, so shadowed sessions are not the canary's complement.
        return self.shadow_fraction >= 1.0 or session_bucket(session_id, self.salt + "/shadow") < self.shadow_fraction

    # --- Router interface ------------------------------------------------------------------------

    def is_auto(self, model_name: str) -> bool:
        return self.control.is_auto(model_name)

    def decide(self, req: CanonicalRequest, headers: Mapping[str, str], *, requested_model: str,
               session_id: str | None = None) -> Decision:
        session_id = session_id or session_identity(lower_case_headers(headers), req)
        if self.canary_fraction > 0.0 and self.variant(session_id) == CANARY:
            assert self.candidate is not None
            try:
                d = self.candidate.decide(req, headers, requested_model=requested_model, session_id=session_id)
            except Exception:
                # Safety first: a broken candidate serves nothing; the control takes the request.
                log.exception("canary %s: candidate decide failed; the control decides", self.name)
            else:
                d.variant, d.experiment = CANARY, self.name
                return d
        d = self.control.decide(req, headers, requested_model=requested_model, session_id=session_id)
        if self.candidate is not None and self.canary_fraction > 0:
            d.experiment = self.name
        if self.shadow and d.policy != PASSTHROUGH and self._shadowed(d.session_id):
            d.experiment = self.name
            self._schedule_shadow(req, headers, requested_model, d)
        elif self._extraction is not None:
            self._extraction.last = None
        return d

    def _schedule_shadow(
        self, req: CanonicalRequest, headers: Mapping[str, str], requested_model: str, served: Decision
    ) -> None:
        if not self.shadow_inline:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                loop.call_soon(self._shadow_decide, req, headers, requested_model, served)
                return
        self._shadow_decide(req, headers, requested_model, served)

    def _shadow_decide(
        self, req: CanonicalRequest, headers: Mapping[str, str], requested_model: str, served: Decision
    ) -> None:
        """The candidate's choice for the request ``served`` answered; written onto ``served`` only."""
        assert self.candidate is not None
        try:
            # The Decision's object is never served: only its model and policy are kept.
            shadow = self.candidate.decide(req, headers, requested_model=requested_model)
            served.shadow_model, served.shadow_policy = shadow.model, shadow.policy
        except Exception:
            self.shadow_errors += 1
            log.exception("shadow %s: candidate decide failed (the served decision is unaffected)", self.name)
        finally:
            if self._extraction is not None and self._extraction.last is not None and self._extraction.last[0] is req:
                self._extraction.last = None  # do not keep the request alive

    def record_outcome(
        self,
        session_id: str,
        success: bool,
        *,
        cost_usd: float | None = None,
        kind: str = "tests",
        learn: bool = False,
    ) -> bool:
        """Credit the router that served the session; a shadow candidate updates its session state
        (cascade rung) too, but never learns from an outcome it did not cause."""
        if self.variant(session_id) == CANARY:
            assert self.candidate is not None
            served = self.candidate.record_outcome(session_id, success, cost_usd=cost_usd, kind=kind, learn=learn)
            # The candidate may have fallen back to the control for some of the session's requests.
            return self.control.record_outcome(session_id, success, cost_usd=cost_usd, kind=kind) or served
        known = self.control.record_outcome(session_id, success, cost_usd=cost_usd, kind=kind, learn=learn)
        if self.shadow and self.candidate is not None:
            self.candidate.record_outcome(session_id, success, cost_usd=cost_usd, kind=kind, learn=False)
        return known

    def set_policy(self, snapshot: Any, version: int | None = None) -> None:
        """The learned policy goes to the control, and to the candidate when they share it."""
        self.control.set_policy(snapshot, version)
        if self._shared_policy and self.candidate is not None:
            self.candidate.set_policy(self.control.bandit, self.control.policy_version)

    def __getattr__(self, name: str) -> Any:
        # settings, catalog, sessions, bandit, policy_version ...: the control's.
        if name.startswith("__") or name == "control":
            raise AttributeError(name)  # not yet set (unpickling): no recursion through self.control
        return getattr(self.control, name)


def build_router(settings: Settings, bandit: BanditLike | None = None) -> Router | ExperimentRouter:
    """The gateway's router: a plain Router, or an ExperimentRouter when ``routing.canary`` /
    ``routing.shadow`` name a candidate. Both may run at once only with one candidate (one name)."""
    control = Router(settings, bandit=bandit)
    canary, shadow = settings.routing.canary, settings.routing.shadow
    if not canary.enabled and not shadow.enabled:
        return control
    spec: CandidateSettings = canary if canary.enabled else shadow
    if canary.enabled and shadow.enabled and (canary.name, canary.config, canary.routes) != (
        shadow.name, shadow.config, shadow.routes
    ):
        raise ConfigError("routing.canary and routing.shadow must name the same candidate when both are on")
    candidate = candidate_router(settings, spec, bandit)
    return ExperimentRouter(
        control,
        candidate,
        canary.fraction if canary.enabled else 0.0,
        shadow.enabled,
        name=spec.name,
        salt=canary.salt if canary.enabled else None,
        shadow_fraction=shadow.fraction,
        shadow_inline=shadow.inline,
    )
