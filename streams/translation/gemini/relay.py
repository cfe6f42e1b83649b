"""The same-dialect relay's edits to a Gemini client's body, on its top-level fields as raw bytes.

The model and streaming belong in the upstream URL, not the body: ``model`` (set by the fast path for
every dialect, and named in a Kafka ``RouteRequest``'s body) and ``stream`` are taken out again.
"""

from __future__ import annotations

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """A model without thinking gets no ``thinkingConfig``. ``ensure_usage`` does not apply: Gemini
    responses always carry ``usageMetadata``."""
    top.pop("model", None)
    top.pop("stream", None)
    if supports_thinking or "generationConfig" not in top:
        return
    config = _decode(top["generationConfig"])
    if isinstance(config, dict) and config.pop("thinkingConfig", None) is not None:
        top["generationConfig"] = msgspec.Raw(_encode(config))
