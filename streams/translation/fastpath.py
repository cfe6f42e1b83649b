"""Same-dialect fast path: relay the client's body with only the routing-relevant fields rewritten.

The body is decoded one level deep (``dict[str, msgspec.Raw]``): untouched fields are re-emitted as
their original bytes, so a 76 KB Claude Code body costs a scan and a copy, not a full parse. The
model is set here; what else a dialect changes is its codec's ``rewrite_relayed`` (``relay.py``).
"""

from __future__ import annotations

import msgspec

from streams.translation import registry
from streams.translation.canonical import Dialect, TranslationError

_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encode = msgspec.json.Encoder().encode


def rewrite_body(
    raw: bytes, dialect: Dialect | str, upstream_model: str, *, supports_thinking: bool, ensure_usage: bool
) -> bytes:
    codec = registry.get(dialect)
    try:
        top = _top.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TranslationError(f"request body is not a JSON object: {exc}", param="body") from None
    top["model"] = msgspec.Raw(_encode(upstream_model))
    codec.rewrite_relayed(top, supports_thinking=supports_thinking, ensure_usage=ensure_usage)
    return _encode(top)
