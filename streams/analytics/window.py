"""Time windows from user input: ``since``/``until`` as ISO 8601, epoch seconds, ``now`` or a span ago."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DEFAULT_SPAN = timedelta(hours=24)
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class WindowError(ValueError):
    """A since/until value that cannot be read; the message says which and why."""


def parse_span(text: str) -> timedelta | None:
    """``90s``, ``15m``, ``24h``, ``7d``, ``2w`` → timedelta; anything else → None."""
    m = _SPAN.match(text.strip().lower())
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def parse_time(text: str, now: datetime) -> datetime:
    """One point in time: ``now``, a span ago (``24h``), epoch seconds or ISO 8601 (naive = UTC)."""
    value = text.strip()
    if value.lower() == "now":
        return now
    span = parse_span(value)
    if span is not None:
        return now - span
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(f"cannot read time {text!r}: use ISO 8601, epoch seconds, 'now' or a span like 24h") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_window(since: str | None, until: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The half-open window ``[since, until)``; defaults: the last 24 hours up to now."""
    now = now or datetime.now(UTC)
    end = parse_time(until, now) if until else now
    start = parse_time(since, end) if since else end - DEFAULT_SPAN
    if start >= end:
        raise WindowError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
    return start, end
