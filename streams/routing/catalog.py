"""The configured models, with the questions routing patterns ask of them: can this model serve the
request? what would it cost? which is the cheapest of a tier?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streams.routing.features import TIER_RANK

if TYPE_CHECKING:
    from streams.config import ModelSettings, Settings
    from streams.routing.features import Features


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
        rank = TIER_RANK.get(tier, 1)
        for r in range(rank, len(TIER_RANK)):
            names = [n for n, m in self.models.items() if TIER_RANK.get(m.tier, 1) == r]
            capable = [n for n in names if self.can_serve(n, f) is None]
            if capable:
                return self.cheapest(capable, f)
        return None

    def resolve(self, target: str, f: Features) -> str | None:
        """A model name, or a tier name resolved to its cheapest capable model."""
        if target in self.models:
            return target
        if target in TIER_RANK:
            return self.of_tier(target, f)
        return None

