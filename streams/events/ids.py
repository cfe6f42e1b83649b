"""Event ids and timestamps, one way for every producer."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A random 128-bit id as hex (cheaper than uuid4 objects on the hot path)."""
    return os.urandom(16).hex()


def now_ms() -> int:
    return int(time.time() * 1000)
