"""Parallel-then-pick: which of N responses to the same request to keep."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streams.translation.canonical import CanonicalResponse, TextPart, ToolCallPart

if TYPE_CHECKING:
    from streams.routing.catalog import Catalog


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
