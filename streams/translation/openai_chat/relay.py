"""The same-dialect relay's edits to an OpenAI Chat client's body, on its top-level fields as raw bytes."""

from __future__ import annotations

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """``ensure_usage``: a stream must end with a usage chunk (the relay cuts it again when the client
    did not ask for it); ``reasoning_effort`` goes only to a model with reasoning."""
    if ensure_usage and _is_true(top.get("stream")):
        opts = _decode(top["stream_options"]) if "stream_options" in top else None
        opts = opts if isinstance(opts, dict) else {}
        if opts.get("include_usage") is not True:
            opts["include_usage"] = True
            top["stream_options"] = msgspec.Raw(_encode(opts))
    if not supports_thinking:
        top.pop("reasoning_effort", None)


def _is_true(raw: msgspec.Raw | None) -> bool:
    return raw is not None and bytes(raw).strip() == b"true"
