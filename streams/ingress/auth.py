"""Client authentication hook. Keys are accepted as they come for now; virtual keys plug in here.

A hook gets the caller's key (``x-api-key`` or ``Authorization: Bearer``) and the headers, and returns
the ``ClientIdentity`` to attribute the request to, or ``None`` to refuse it with a 401 in the caller's
dialect. It runs on the request path: keep it in-memory and fast.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class ClientIdentity:
    key_id: str  # a short hash of the key, safe to log and trace; never the key itself
    team: str | None = None
    allowed_models: frozenset[str] | None = None  # None: any model
    tags: Mapping[str, str] = field(default_factory=dict)


AuthHook = Callable[[str | None, Mapping[str, str]], ClientIdentity | None]

_ANONYMOUS = ClientIdentity(key_id="anonymous")


def key_id(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def accept_any(key: str | None, headers: Mapping[str, str]) -> ClientIdentity | None:
    """Default hook: every caller is accepted; the key is only hashed for attribution."""
    return ClientIdentity(key_id=key_id(key)) if key else _ANONYMOUS
