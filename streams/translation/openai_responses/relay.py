"""The same-dialect relay's edits to an OpenAI Responses client's body, on its top-level fields as raw
bytes."""

from __future__ import annotations

import msgspec

from streams.translation.common import SEALED_MARK, relayed_signature

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """A model without reasoning gets neither ``reasoning`` nor a request for encrypted reasoning
    (which it rejects). ``ensure_usage`` does not apply: Responses streams always carry usage."""
    _unseal(top)
    if supports_thinking:
        return
    top.pop("reasoning", None)
    if "include" in top:
        inc = _decode(top["include"])
        if isinstance(inc, list):
            kept = [i for i in inc if i != "reasoning.encrypted_content"]
            if kept != inc:
                top["include"] = msgspec.Raw(_encode(kept))


def _unseal(top: dict[str, msgspec.Raw]) -> None:
    """Reasoning another dialect's model made reached this client sealed (``common.seal_signature``):
    the model that made it gets its own item back (id and encrypted_content), any other none."""
    raw = top.get("input")
    if raw is None or SEALED_MARK not in bytes(raw):
        return
    items = _decode(raw)
    model = _decode(top["model"])
    if not isinstance(items, list) or not isinstance(model, str):
        return
    kept = []
    for it in items:
        value = it.get("encrypted_content") if isinstance(it, dict) and it.get("type") == "reasoning" else None
        if isinstance(value, str):
            fit = relayed_signature(value, model)
            if fit is None:
                continue
            it = {**it, "encrypted_content": fit[0], **({"id": fit[1]} if fit[1] else {})}
        kept.append(it)
    top["input"] = msgspec.Raw(_encode(kept))
