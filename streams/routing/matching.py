"""Matching features against a ``match`` (or a rule's ``when``) mapping, compiled once.

A value matches by equality, a list by membership, a mapping by operators (``gt``, ``in``,
``contains`` ...); every key must hold, and a feature the request does not have never matches.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

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
