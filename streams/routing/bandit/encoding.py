"""From a context (feature name -> value) to the bandit's input vector (see ``layout``).

Named features are hashed into ``dim`` slots with a signed log (token counts and flags become
comparable) and the hashed part is normalised to unit length, so the context can move an arm's
estimate without swamping its bias. The text of the current turn (hashed word n-grams, keys
``t:<bucket>`` from ``streams.routing.features.text_features``) gets a block of its own, normalised
on its own to ``text_weight``, so a long prompt's words neither drown the other features nor vanish
among them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import numpy as np

from streams.routing.bandit.layout import ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, CASCADE_SLOTS, HEAD, TASK_SLOTS

TEXT_PREFIX = "t:"
# Keys the model already has in its head, so they are not hashed again: the router's
# ``Features.vector()`` carries a constant "bias", which would otherwise take a context slot and
# dilute the normalised context.
_HEAD_KEYS = frozenset({ATTEMPT_KEY, ATTEMPTS_LEFT_KEY, "bias"})


def feature_slot(name: str, dim: int) -> int:
    """The hashed slot of a feature name: stable across processes (unlike hash()), so snapshots mean
    the same thing on every worker."""
    return zlib.crc32(name.encode()) % dim


class ContextEncoder:
    """Encodes contexts for one layout (``dim`` hashed slots, ``text_dim`` text slots). Plain and
    picklable; it memoises each feature name's slot."""

    def __init__(self, dim: int, text_dim: int, text_weight: float) -> None:
        self.dim = dim
        self.text_dim = text_dim
        self.text_weight = text_weight  # norm of the text block relative to the other features
        self._slots: dict[str, int] = {}  # cache of feature name -> slot

    @property
    def size(self) -> int:
        """Length of an encoded vector."""
        return self.dim + HEAD + self.text_dim

    def vector(self, context: Mapping[str, float]) -> np.ndarray:
        vals = [0.0] * (self.dim + HEAD)
        slots = self._slots
        log1p, copysign = math.log1p, math.copysign
        tasks: list[tuple[int, float]] = []
        text: list[tuple[int, float]] = []
        text_dim = self.text_dim
        for name, value in context.items():
            if not value or name in _HEAD_KEYS:
                continue
            t = TASK_SLOTS.get(name)
            if t is not None:
                tasks.append((t, min(max(float(value), -1.0), 1.0)))
                continue
            if name.startswith(TEXT_PREFIX):
                if text_dim:
                    s = slots.get(name)
                    if s is None:
                        s = slots[name] = feature_slot(name, text_dim)
                    text.append((s, float(value)))
                continue
            s = slots.get(name)
            if s is None:
                s = slots[name] = HEAD + feature_slot(name, self.dim)
            v = float(value)
            vals[s] += copysign(log1p(abs(v)), v)  # signed log: token counts and flags comparable
        if text_dim:
            block = [0.0] * text_dim
            for s, v in text:
                block[s] += v
            tx = np.array(block)
            tnorm = math.sqrt(float(tx @ tx))
            if tnorm > 0:
                tx *= self.text_weight / tnorm
            x = np.concatenate([np.array(vals), tx])
        else:
            x = np.array(vals)
        core = x[: self.dim + HEAD]  # a view: normalising it leaves the text block as it is
        norm = math.sqrt(float(core @ core))
        if norm > 0:
            core /= norm  # unit norm: the context can move an arm's estimate, not swamp its bias
        x[0] = 1.0
        for t, value in tasks:
            x[t] = value
        attempt = int(context.get(ATTEMPT_KEY, 0) or 0)
        for j in range(1, CASCADE_SLOTS + 1):
            x[j] = 1.0 if attempt > j else 0.0
        return x
