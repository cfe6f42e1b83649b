"""Decision cache: correlated requests (same session, same coarse features) reuse a recent decision.

An agent's tool loop sends many near-identical requests a second apart; re-running the classifier and
the policy for each buys nothing. Keyed by session, the session's epoch (bumped by outcomes and
switches, so an escalation is never hidden by the cache) and a feature signature; bounded LRU + TTL.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable

from streams.routing.decision import Decision
from streams.routing.features import Features


def signature(f: Features, route: str) -> tuple[Hashable, ...]:
    """The features a decision depends on, coarsened so that a growing conversation still matches."""
    size_bucket = int(math.log2(f.input_tokens + 1) * 2)  # ~41% steps
    return (
        route,
        f.requested_model,
        f.client,
        f.task,
        f.stage,
        f.thinking_requested,
        f.signed_thinking,
        f.has_images,
        f.tools_offered > 0,
        f.background,
        f.hint_task,
        f.hint_tier,
        f.hint_max_cost_usd,
        f.hint_latency,
        size_bucket,
    )


class DecisionCache:
    def __init__(self, max_size: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[Hashable, tuple[float, Decision]] = OrderedDict()
        self.max_size = max_size
        self.ttl_s = ttl_s
        self.clock = clock
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def enabled(self) -> bool:
        return self.max_size > 0 and self.ttl_s > 0

    def get(self, key: Hashable) -> Decision | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        stored_at, decision = item
        if self.clock() - stored_at > self.ttl_s:
            del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return decision

    def put(self, key: Hashable, decision: Decision) -> None:
        if not self.enabled:
            return
        self._items[key] = (self.clock(), decision)
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
