"""The same-dialect relay's edits to an OpenAI Responses client's body, on its top-level fields as raw
bytes."""

from __future__ import annotations

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """A model without reasoning gets neither ``reasoning`` nor a request for encrypted reasoning
    (which it rejects). ``ensure_usage`` does not apply: Responses streams always carry usage."""
    if supports_thinking:
        return
    top.pop("reasoning", None)
    if "include" in top:
        inc = _decode(top["include"])
        if isinstance(inc, list):
            kept = [i for i in inc if i != "reasoning.encrypted_content"]
            if kept != inc:
                top["include"] = msgspec.Raw(_encode(kept))
