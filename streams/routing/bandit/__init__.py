"""The learned routing policy: a contextual bandit over the configured models (arms).

Each arm keeps a Bayesian linear model of its success given the request context, plus a running
estimate of its cost; priors come from the catalogue (cost from price, success from tier and task
type). The modules, one concern each:

- ``base``: the learner protocol (``predict_one`` / ``learn_one``) and the shared state.
- ``layout``, ``encoding``: the model's input vector, and hashing a context into it.
- ``priors``: what an arm is believed to be worth before any outcome.
- ``posteriors``: learning from outcomes, and exact merges of two learners.
- ``forgetting``: the half-life weighting of old evidence.
- ``cascade``: retries, and the order of attempts within a session.
- ``snapshot``: the learned state to bytes and back (no pickle).
- ``thompson``: ``ContextualBandit``, the decisions; ``factory``: ``bandit_for(settings)``.
"""

from streams.routing.bandit.base import BanditLike, BanditState, CostScale, Exploration
from streams.routing.bandit.factory import bandit_for
from streams.routing.bandit.layout import ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, HEAD
from streams.routing.bandit.priors import (
    REFERENCE_INPUT_TOKENS,
    REFERENCE_OUTPUT_TOKENS,
    TIER_PRIOR,
    ArmPrior,
    priors_from_models,
    task_prior_success,
)
from streams.routing.bandit.snapshot import SNAPSHOT_FORMAT
from streams.routing.bandit.thompson import ContextualBandit

__all__ = [
    "ATTEMPTS_LEFT_KEY",
    "ATTEMPT_KEY",
    "HEAD",
    "REFERENCE_INPUT_TOKENS",
    "REFERENCE_OUTPUT_TOKENS",
    "SNAPSHOT_FORMAT",
    "TIER_PRIOR",
    "ArmPrior",
    "BanditLike",
    "BanditState",
    "ContextualBandit",
    "CostScale",
    "Exploration",
    "bandit_for",
    "priors_from_models",
    "task_prior_success",
]
