"""The same-dialect relay's edits to a Gemini client's body, on its top-level fields as raw bytes.

The model and streaming belong in the upstream URL, not the body: ``model`` (set by the fast path for
every dialect, and named in a Kafka ``RouteRequest``'s body) and ``stream`` are taken out again.
"""

from __future__ import annotations

import msgspec

from streams.translation.common import SEALED_MARK, relayed_signature
from streams.translation.gemini.parts import SYNTHETIC_THOUGHT_SIGNATURE

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """A model without thinking gets no ``thinkingConfig``. ``ensure_usage`` does not apply: Gemini
    responses always carry ``usageMetadata``."""
    if "model" in top:
        _unseal(top, _decode(top["model"]))
    top.pop("model", None)
    top.pop("stream", None)
    if supports_thinking or "generationConfig" not in top:
        return
    config = _decode(top["generationConfig"])
    if isinstance(config, dict) and config.pop("thinkingConfig", None) is not None:
        top["generationConfig"] = msgspec.Raw(_encode(config))


def _unseal(top: dict[str, msgspec.Raw], model: object) -> None:
    """Thought signatures reached this client sealed with their model (``gemini.usage.seal_body``):
    that model gets its own back; for any other a call carries the marker Gemini accepts instead
    (Gemini 3 wants the first call of a turn signed), other parts none."""
    raw = top.get("contents")
    if raw is None or not isinstance(model, str) or SEALED_MARK not in bytes(raw):
        return
    contents = _decode(raw)
    if not isinstance(contents, list):
        return
    for c in contents:
        parts = c.get("parts") if isinstance(c, dict) else None
        for part in parts if isinstance(parts, list) else ():
            value = part.get("thoughtSignature") if isinstance(part, dict) else None
            if not isinstance(value, str):
                continue
            fit = relayed_signature(value, model)
            if fit is not None:
                part["thoughtSignature"] = fit[0]
            elif "functionCall" in part:
                part["thoughtSignature"] = SYNTHETIC_THOUGHT_SIGNATURE
            else:
                del part["thoughtSignature"]
    top["contents"] = msgspec.Raw(_encode(contents))
