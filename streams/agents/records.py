"""Event dicts in the shape of ``streams/events/schemas/*.avsc``: built from Decisions, trace dicts and outcomes.

Producers hand us dicts that are close to a schema but not exact (a ``None`` where the schema wants a
string, extra keys like ``key_id``); ``conform`` turns them into exactly the schema's fields so the
encoder never fails on a field the producer did not know about.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from functools import lru_cache
from typing import Any

from streams.events.codec import EventCodec
from streams.events.ids import new_id, now_ms
from streams.routing.decision import Decision
from streams.routing.features import Features

__all__ = ["bounded", "conform", "context_from_features", "dead_letter_row", "decision_event", "new_id",
           "now_ms"]

_ZERO: dict[str, Any] = {
    "string": "", "bytes": b"", "long": 0, "int": 0, "double": 0.0, "float": 0.0, "boolean": False,
}


def _zero(avro_type: Any) -> Any:
    if isinstance(avro_type, str):
        return _ZERO.get(avro_type)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        if kind == "map":
            return {}
        if kind == "array":
            return []
        if kind == "enum":
            return avro_type["symbols"][0]
        return _ZERO.get(kind) if isinstance(kind, str) else None
    return None


@lru_cache(maxsize=16)
def _field_plan(codec: EventCodec, record_name: str) -> tuple[tuple[str, bool, Any], ...]:
    """Per field: (name, nullable, value to use when missing)."""
    plan = []
    for f in codec.current[record_name].parsed["fields"]:
        t = f["type"]
        nullable = isinstance(t, list) and "null" in t
        if "default" in f:
            fill = f["default"]
        elif nullable:
            fill = None
        else:
            fill = _zero(t)
        plan.append((f["name"], nullable, fill))
    return tuple(plan)


def conform(codec: EventCodec, record_name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """Exactly the schema's fields: missing or ``None`` non-nullable ones get the default (or zero)."""
    out: dict[str, Any] = {}
    for name, nullable, fill in _field_plan(codec, record_name):
        v = value.get(name)
        if v is None and not nullable:
            # Copy container defaults: the caller may mutate the event afterwards.
            v = dict(fill) if isinstance(fill, dict) else list(fill) if isinstance(fill, list) else fill
        out[name] = v
    return out


FIELD_LIMIT = 4096  # characters of one string in an event (tool names, ids, error texts)


def _too_long(value: Any, limit: int) -> bool:
    if type(value) is str:
        return len(value) > limit
    if isinstance(value, dict):
        for k, v in value.items():
            if (type(k) is str and len(k) > limit) or (type(v) is not float and _too_long(v, limit)):
                return True
        return False
    if isinstance(value, list):
        return any(_too_long(v, limit) for v in value)
    return False


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}...[truncated {len(value) - limit} chars]"
    if isinstance(value, dict):
        return {_cut(k, limit): _cut(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, limit) for v in value]
    return value


def bounded(value: dict[str, Any], limit: int = FIELD_LIMIT, *, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` with every string (map keys included, at any depth) cut to ``limit`` characters and a
    marker saying how much was cut: one oversized field must not make an event the broker refuses.
    Fields in ``keep`` are left alone (the features JSON: its parts were bounded before dumping)."""
    for k, v in value.items():
        if (len(v) > limit if type(v) is str else isinstance(v, dict | list) and _too_long(v, limit)) \
                and k not in keep:
            break
    else:
        return value  # the common case: nothing to copy
    return {k: v if k in keep else _cut(v, limit) for k, v in value.items()}


def _float_map(value: Any) -> dict[str, float] | None:
    if not isinstance(value, Mapping):
        return None
    out: dict[str, float] = {}
    for k, v in value.items():
        if isinstance(v, bool | int | float):
            out[str(k)] = float(v)
    return out


_FEATURE_FIELDS = frozenset(f.name for f in dataclass_fields(Features))


def context_from_features(features: Mapping[str, Any]) -> dict[str, float] | None:
    """The bandit's context vector rebuilt from ``Features.to_dict()`` (what ``Decision.features`` holds)."""
    known = {k: v for k, v in features.items() if k in _FEATURE_FIELDS}
    if not known:
        return None
    try:
        return Features(**known).vector()
    except (TypeError, ValueError):
        return None


def decision_event(decision: Decision, **context: Any) -> dict[str, Any]:
    """A Decision event from the router's ``Decision`` plus the gateway's context keywords.

    The bandit context vector (what the learner learns on) comes from ``context=``, else from the
    decision's features under ``context``/``vector``, else it is rebuilt from the features the router
    extracted (``Features.vector()``, as the bandit pattern computed it); the features go out as JSON.
    """
    features = bounded(dict(decision.features or {}))
    vector = _float_map(context.get("context"))
    for key in ("context", "vector"):
        found = features.pop(key, None)
        if vector is None:
            vector = _float_map(found)
    if vector is None:
        vector = context_from_features(features)
    task_type = context.get("task_type") or features.get("task_type") or features.get("task") or ""
    try:
        features_json = json.dumps(features, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        features_json = "{}"
    return {
        "event_id": decision.decision_id,
        "ts_ms": decision.ts_ms or now_ms(),
        "request_id": str(context.get("request_id") or ""),
        "session_id": decision.session_id or "",
        "model": decision.model,
        "provider": decision.provider,
        "route": decision.route or "default",
        "policy": decision.policy,
        "policy_version": int(decision.policy_version or 0),
        "prompt_version": decision.prompt_version,
        "reason": decision.reason or "",
        "confidence": float(decision.confidence),
        "propensity": float(decision.propensity),
        "task_type": str(task_type),
        "features": features_json,
        "context": vector or {},
        "fallbacks": list(decision.fallbacks or []),
        "source": str(context.get("source") or "http"),
        "variant": decision.variant or "control",
        "experiment": decision.experiment or "",
        "shadow_model": decision.shadow_model,
        "shadow_policy": decision.shadow_policy,
    }


def dead_letter_row(topic: str, partition: int, offset: int, reason: str, payload: bytes) -> dict[str, Any]:
    """A ``dead_letters`` row; the id is the position in the log, so a redelivery collapses into it."""
    return {
        "event_id": f"{topic}/{partition}/{offset}",
        "ts_ms": now_ms(),
        "topic": topic,
        "reason": reason[:2000],
        "payload": payload[:65536].hex(),
    }


# Events whose string fields are cut to ``FIELD_LIMIT`` (a policy snapshot must stay whole).
_BOUNDED = frozenset({"Trace", "Decision", "Outcome"})


def encode_event(codec: EventCodec, name: str, value: dict[str, Any]) -> tuple[bytes | None, bytes]:
    """The Kafka key and Avro bytes of one event (``value`` has the schema's fields: ``conform`` or
    ``decision_event``): long strings cut (``bounded``), keyed by ``session_id`` (a snapshot by its
    ``policy``) so a session's events meet in one partition."""
    event = bounded(value, keep=("features",)) if name in _BOUNDED else value
    key = event.get("policy") if name == "PolicySnapshot" else event.get("session_id")
    return (str(key).encode() if key else None), codec.encode(name, event)
