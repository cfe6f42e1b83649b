"""Configuration of the routing brain (the ``routing:`` section of weave-router.yaml).

A route selects requests by their features (``match``, first match wins, a route with an empty match
is the default) and names the policy pattern that picks the model. Match values are a scalar
(equality), a list (membership) or a mapping of operators ``{gt, gte, lt, lte, ne, in, not_in}``,
keyed by any field of ``Features.to_dict()`` (e.g. ``client``, ``task``, ``stage``, ``input_tokens``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PatternName = Literal["rules", "classifier", "cascade", "failover", "parallel", "bandit", "fixed"]


class BanditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(1.0, description="reward weight of success")
    beta: float = Field(
        0.8,
        description=(
            "reward weight of cost, in the units of cost_scale; 0.8 relative: a success is worth 1.25 "
            "calls to the dearest model (a cascade stops when no model left is worth its cost)"
        ),
    )
    cost_scale: Literal["relative", "usd"] = Field(
        "relative",
        description=(
            "units of the cost in the reward U = alpha * success - beta * cost: 'relative' divides "
            "each cost by the dearest model's expected cost per decision (from its price), so beta=1 "
            "means a success is worth one call to the dearest model, whatever the catalogue's price "
            "scale; 'usd' weighs raw dollars"
        ),
    )
    exploration: Literal["thompson", "ucb"] = "thompson"
    explore_scale: float = Field(
        0.15,
        ge=0.0,
        description=(
            "width of Thompson draws, as a share of the posterior std: 1 is plain Thompson sampling; "
            "the default explores little (tuned on replays), so a model that fails its first tries "
            "is seldom tried again"
        ),
    )
    sigma: float = Field(0.95, ge=0.0, le=1.0, description="confidence threshold; below it use the default")
    explore_below_sigma: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "share of sessions (chosen by a hash of the session id, so a session stays put) that follow "
            "the bandit's pick even below sigma; 0 is safety first, but then the learner only ever hears "
            "about the frontier default and confidence in cheaper models cannot grow"
        ),
    )
    quality_target: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "share of the frontier default's success rate to keep (e.g. 0.95): the router then "
            "minimises cost subject to that, estimated on the recent traffic with its own uncertainty; "
            "unset: maximise U = alpha * success - beta * cost (beta is the advanced knob)"
        ),
    )
    half_life: float | None = Field(
        None,
        gt=0.0,
        description=(
            "forget old evidence: an outcome counts half after this many seconds (replays: tasks); "
            "unset: never forget"
        ),
    )
    seed: int | None = None


# The tier each task type calls for, before any outcome: the learner's prior per (task type, tier).
TierName = Literal["frontier", "strong", "standard", "cheap"]
DEFAULT_TASK_TIERS: dict[str, TierName] = {
    "planning": "frontier",  # system design, architecture: the expensive mistakes
    "debugging": "standard",  # triage of a failure; a struggling session lifts it (strong, then frontier)
    "implementation": "standard",  # well-scoped edits: a fast standard model
    "test_writing": "standard",  # tests and triage: a mid model
    "search": "cheap",  # context gathering, look-ups
    "chat": "cheap",
    "background": "cheap",  # titles, summaries, topic checks
}


class RuleSettings(BaseModel):
    """One rule of the ``rules`` pattern: when the features match, use ``model`` (or the cheapest of ``tier``)."""

    model_config = ConfigDict(extra="forbid")

    when: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    tier: str | None = None

    @model_validator(mode="after")
    def _target(self) -> RuleSettings:
        if not self.model and not self.tier:
            raise ValueError("a rule needs a model or a tier")
        return self


class RouteSettings(BaseModel):
    """One route: a match on features and the policy pattern that picks the model.

    Pattern-specific fields: ``rules`` (rules), ``task_map`` (classifier: task type -> model name or
    tier, key ``default`` for the rest), ``models`` (cascade: cheapest first; failover: in order;
    parallel: the N candidates; bandit: the arms; fixed: the one model), ``min_confidence`` (classifier
    and cascade: below it use the stronger choice), ``parallel_n`` (parallel).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    match: dict[str, Any] = Field(default_factory=dict)
    pattern: PatternName = "bandit"
    models: list[str] = Field(default_factory=list)
    tier: str | None = None
    prompt_version: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    rules: list[RuleSettings] = Field(default_factory=list)
    task_map: dict[str, str] = Field(default_factory=dict)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    parallel_n: int = Field(2, ge=1, le=8)


class CandidateSettings(BaseModel):
    """A candidate routing policy for an experiment: a second Router over the same models and providers.

    Either ``config`` (a YAML file: a full weave-router.yaml, of which only ``routing:`` is used, or a
    bare routing section) or inline ``routes`` (plus optional ``default_model`` / ``bandit``), which
    replace the corresponding fields of the main routing section. Relative paths are read from the
    working directory.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field("candidate", min_length=1, description="experiment name, recorded on every decision")
    config: str | None = Field(None, description="candidate YAML (a weave-router.yaml or a routing section)")
    routes: list[RouteSettings] | None = Field(None, description="inline candidate routes")
    default_model: str | None = None
    bandit: BanditSettings | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CandidateSettings:
        if self.config is not None and (self.routes is not None or self.default_model or self.bandit):
            raise ValueError("give either config or inline routes/default_model/bandit, not both")
        return self

    @property
    def defined(self) -> bool:
        return self.config is not None or self.routes is not None or bool(self.default_model) or self.bandit is not None


class CanarySettings(CandidateSettings):
    """Serve ``fraction`` of the task-sessions (by a hash of the session id, so a session stays in its
    arm) with the candidate; the rest with the main (control) policy."""

    fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of sessions the candidate serves")
    salt: str | None = Field(None, description="hash salt (default: the name, so a new experiment reshuffles)")

    @property
    def enabled(self) -> bool:
        return self.defined and self.fraction > 0.0


class ShadowSettings(CandidateSettings):
    """Compute the candidate's decision next to the served one without acting on it (recorded as
    ``shadow_model`` / ``shadow_policy``)."""

    fraction: float = Field(1.0, ge=0.0, le=1.0, description="share of sessions shadowed")
    inline: bool = Field(
        False,
        description="compute the shadow before the request goes upstream (default: right after, off the critical path)",
    )

    @property
    def enabled(self) -> bool:
        return self.defined and self.fraction > 0.0


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_models: list[str] = Field(default_factory=lambda: ["router/auto"])
    default_model: str | None = Field(None, description="frontier default used below the confidence threshold")
    classifier: Literal["rules", "embedding"] = "rules"
    task_tiers: dict[str, TierName] = Field(
        default_factory=lambda: dict(DEFAULT_TASK_TIERS),
        description=(
            "task type -> the tier it calls for with no outcome yet (the learned policy's prior; sigma "
            "guards choices below it); a type left out has no prior beyond its model's tier"
        ),
    )
    bandit: BanditSettings = Field(default_factory=BanditSettings)
    routes: list[RouteSettings] = Field(default_factory=list)
    decision_cache_ttl_s: float = 30.0
    session_ttl_s: float = 3600.0
    canary: CanarySettings = Field(default_factory=CanarySettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    # Added by the routing brain.
    decision_cache_size: int = Field(10_000, ge=0, description="0 disables the decision cache")
    max_sessions: int = Field(100_000, gt=0, description="sessions kept (LRU) before the oldest is dropped")
    sticky_sessions: bool = Field(True, description="a session keeps its model until a safe, paying switch")
    expected_remaining_requests: float = Field(
        0.0, ge=0.0, description="requests a session is expected to still make; 0: as many as it made so far"
    )
    expected_output_tokens: int = Field(1000, ge=0, description="output size assumed when pricing a request")
    embedding_labels: str | None = Field(
        None, description="JSONL of {text, label} to train the embedding classifier (default: built-in set)"
    )
