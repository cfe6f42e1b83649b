"""The learned policy of a running service, built from its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.routing.bandit.thompson import ContextualBandit

if TYPE_CHECKING:
    from streams.config import Settings


def bandit_for(settings: Settings, **kwargs: Any) -> ContextualBandit:
    """The learned policy for a service's settings: its models, task tiers and frontier default."""
    return ContextualBandit.from_settings(
        settings.routing.bandit,
        settings.models,
        task_tiers=settings.routing.task_tiers,
        reference_arm=settings.frontier_default(),
        **kwargs,
    )
