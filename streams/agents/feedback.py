"""The logic behind ``POST /v1/feedback``: a caller's report of how a task-session went → an Outcome event.

Accepted JSON (every field but one of the ids optional)::

    {"session_id": "…" | "request_id": "…",
     "success": true | false,            # or "score": 0.0 … 1.0
     "tests_passed": 12, "tests_failed": 0,
     "cost_usd": 0.42,
     "metadata": {"suite": "unit", "ci_run": 1234},
     "event_id": "…"}                    # optional idempotency key: a retried POST is stored once

Without ``success`` or ``score``, success is derived from the test counts (no failures and at least
one pass). Invalid input raises ``ValueError`` whose first word is the offending field.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from streams.agents.records import now_ms

MAX_ID = 200
MAX_METADATA = 64
MAX_META_VALUE = 1000


def _id(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string")
    if len(value) > MAX_ID:
        raise ValueError(f"{name}: longer than {MAX_ID} characters")
    return value


def _count(payload: Mapping[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31 - 1:
        raise ValueError(f"{name}: must be a non-negative integer")
    return value


def _number(value: Any, name: str, *, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a number")
    if not lo <= float(value) <= hi:
        raise ValueError(f"{name}: must be between {lo:g} and {hi:g}")
    return float(value)


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("metadata: must be an object")
    if len(value) > MAX_METADATA:
        raise ValueError(f"metadata: more than {MAX_METADATA} keys")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ValueError("metadata: keys must be strings")
        if isinstance(v, Mapping | list):
            raise ValueError(f"metadata: value of {k!r} must be a string, number or boolean")
        text = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        out[k] = text[:MAX_META_VALUE]
    return out


def build_outcome(
    payload: Mapping[str, Any],
    *,
    resolve_session: Callable[[str], str | None] | None = None,
    source: str = "feedback",
) -> dict[str, Any]:
    """Validate a feedback payload into an Outcome event (``streams/events/schemas/outcome.avsc``).

    ``resolve_session`` maps a request id to its session (the gateway knows its recent requests); when
    only ``request_id`` is given and it cannot be resolved, the request id stands in as the session.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("body: must be a JSON object")
    session_id = _id(payload, "session_id")
    request_id = _id(payload, "request_id")
    if session_id is None and request_id is None:
        raise ValueError("session_id: session_id or request_id is required")
    tests_passed = _count(payload, "tests_passed")
    tests_failed = _count(payload, "tests_failed")
    if "success" in payload and payload["success"] is not None:
        raw = payload["success"]
        success = (1.0 if raw else 0.0) if isinstance(raw, bool) else _number(raw, "success", hi=1.0)
    elif payload.get("score") is not None:
        success = _number(payload["score"], "score", hi=1.0)
    elif tests_passed is not None or tests_failed is not None:
        success = 1.0 if not tests_failed and (tests_passed or 0) > 0 else 0.0
    else:
        raise ValueError("success: success (bool), score (0..1) or test counts are required")
    cost = payload.get("cost_usd")
    cost_usd = None if cost is None else _number(cost, "cost_usd")
    event_id = _id(payload, "event_id") or str(uuid.uuid4())
    if session_id is None:
        assert request_id is not None
        session_id = (resolve_session(request_id) if resolve_session else None) or request_id
    return {
        "event_id": event_id,
        "ts_ms": now_ms(),
        "session_id": session_id,
        "request_id": request_id,
        "success": success,
        "tests_passed": tests_passed,
        "tests_failed": tests_failed,
        "cost_usd": cost_usd,
        "metadata": _metadata(payload.get("metadata")),
        "source": source,
    }
