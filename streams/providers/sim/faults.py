"""Fault injection: what can go wrong with an upstream, and when it should.

A fault comes from the config, from ``POST /sim/faults`` at run time, or from one request's
``x-sim-fault`` header. Kinds:

- ``error``: an HTTP error in the dialect's shape (``status`` 500 by default; aliases "500", "503", "529")
- ``rate_limit``: 429 with a ``Retry-After`` header (alias "429")
- ``timeout``: hang ``seconds`` before the first byte (alias "hang")
- ``disconnect``: close the connection after ``after_chunks`` stream events (mid-body when not streaming)
- ``malformed``: a data line that is not JSON after ``after_chunks`` events (a truncated body when not streaming)
- ``slow``: stream at ``tokens_per_s`` instead of the configured rate
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultKind = Literal["error", "rate_limit", "timeout", "disconnect", "malformed", "slow"]
FAULT_KINDS: tuple[str, ...] = ("error", "rate_limit", "timeout", "disconnect", "malformed", "slow")

_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "429": ("rate_limit", {}),
    "hang": ("timeout", {}),
    "rate-limit": ("rate_limit", {}),
}


class FaultError(ValueError):
    """A fault specification that cannot be understood; the message says why."""


@dataclass
class FaultSpec:
    kind: FaultKind
    status: int = 500
    probability: float | None = None
    count: int | None = None
    model: str | None = None
    dialect: str | None = None
    after_chunks: int = 2
    seconds: float | None = None
    retry_after: float = 1.0
    tokens_per_s: float = 20.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise FaultError("fault probability must be in [0, 1]")
        if self.count is not None and self.count < 1:
            raise FaultError("fault count must be >= 1")
        if not 400 <= self.status <= 599:
            raise FaultError("fault status must be an HTTP error status (400-599)")
        if self.after_chunks < 0:
            raise FaultError("after_chunks must be >= 0")
        if self.tokens_per_s <= 0:
            raise FaultError("tokens_per_s must be > 0")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        if not isinstance(data, dict) or "kind" not in data:
            raise FaultError("a fault is a JSON object with at least 'kind'")
        fields = dict(data)
        kind = str(fields.pop("kind"))
        kind, extra = _normalise_kind(kind)
        for key, value in extra.items():
            fields.setdefault(key, value)
        known = set(cls.__dataclass_fields__) - {"kind"}
        unknown = set(fields) - known
        if unknown:
            raise FaultError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(kind=kind, **fields)  # type: ignore[arg-type]
        except TypeError as exc:
            raise FaultError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, model: str, dialect: str) -> bool:
        return (self.model is None or self.model == model) and (self.dialect is None or self.dialect == dialect)


def _normalise_kind(kind: str) -> tuple[str, dict[str, Any]]:
    kind = kind.strip().lower()
    if kind in _ALIASES:
        return _ALIASES[kind]
    if kind.isdigit():
        return "error", {"status": int(kind)}
    return kind, {}


def parse_fault_header(value: str) -> FaultSpec:
    """``x-sim-fault``: a JSON object, or ``kind[:param]`` such as ``503``, ``429:2``, ``timeout:5``,
    ``disconnect:3``, ``malformed:1``, ``slow:20``."""
    value = value.strip()
    if value.startswith("{"):
        try:
            return FaultSpec.from_dict(json.loads(value))
        except json.JSONDecodeError as exc:
            raise FaultError(f"x-sim-fault: invalid JSON: {exc}") from exc
    kind, _, param = value.partition(":")
    kind, fields = _normalise_kind(kind)
    if param:
        try:
            number = float(param)
        except ValueError as exc:
            raise FaultError(f"x-sim-fault: parameter {param!r} is not a number") from exc
        key = (
            {
                "rate_limit": "retry_after",
                "timeout": "seconds",
                "disconnect": "after_chunks",
                "malformed": "after_chunks",
                "slow": "tokens_per_s",
                "error": "status",
            }[kind]
            if kind in FAULT_KINDS
            else "seconds"
        )
        fields[key] = int(number) if key in ("after_chunks", "status") else number
    return FaultSpec.from_dict({"kind": kind, **fields})


class FaultBook:
    """The active faults of one simulator, with a seeded RNG so probabilistic chaos is reproducible."""

    def __init__(self, faults: list[FaultSpec], seed: int = 0) -> None:
        self._faults: list[FaultSpec] = [FaultSpec(**f.to_dict()) for f in faults]
        self._rng = random.Random(seed)
        self.injected: dict[str, int] = {}

    def add(self, fault: FaultSpec) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def active(self) -> list[FaultSpec]:
        return list(self._faults)

    def pick(self, model: str, dialect: str) -> FaultSpec | None:
        """The fault to apply to this request, if any; consumes one use of a counted fault."""
        if not self._faults:  # the common case on the benchmark path: no work at all
            return None
        for fault in self._faults:
            if not fault.matches(model, dialect):
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def record(self, fault: FaultSpec) -> None:
        self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
