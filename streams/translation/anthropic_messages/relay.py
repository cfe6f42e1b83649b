"""The same-dialect relay's edits to an Anthropic client's body, on its top-level fields as raw bytes.

Only what the chosen model cannot take is changed: thinking, its effort and its context edits for a
model without thinking, or for the one turn whose pending tool calls came from a model without it.
"""

from __future__ import annotations

import msgspec

from streams.translation.anthropic_messages.request import without_thinking_edits
from streams.translation.common import SEALED_MARK, relayed_signature


class _Msg(msgspec.Struct):
    role: str = ""
    content: msgspec.Raw = msgspec.Raw(b'""')


class _Block(msgspec.Struct):
    type: str = ""


_msgs = msgspec.json.Decoder(list[_Msg])
_blocks = msgspec.json.Decoder(list[_Block])
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

_SIGNED = {"thinking": "signature", "redacted_thinking": "data"}  # block type -> its signed field
_THINKING_BETAS = ("interleaved-thinking-", "effort-", "thinking-token-count-")


def rewrite_relayed(top: dict[str, msgspec.Raw], *, supports_thinking: bool, ensure_usage: bool) -> None:
    """``ensure_usage`` does not apply: Anthropic streams always carry usage."""
    _unseal(top)
    if "thinking" not in top and "output_config" not in top and "context_management" not in top:
        return
    if supports_thinking:
        th = _decode(top["thinking"]) if "thinking" in top else None
        if not (isinstance(th, dict) and th.get("type") in ("enabled", "adaptive")):
            return
        if not _last_tool_turn_lacks_thinking(top.get("messages")):
            return
        # The pending tool calls were made by a model without (valid) thinking: Anthropic would reject
        # the request with thinking on, so this one request goes without it.
    top.pop("thinking", None)
    if "output_config" in top:
        oc = _decode(top["output_config"])
        if isinstance(oc, dict):
            oc.pop("effort", None)
            if oc:
                top["output_config"] = msgspec.Raw(_encode(oc))
            else:
                del top["output_config"]
    if "context_management" in top:
        cm = _decode(top["context_management"])
        if isinstance(cm, dict):
            kept = without_thinking_edits(cm)
            if kept:
                top["context_management"] = msgspec.Raw(_encode(kept))
            else:
                del top["context_management"]


def _unseal(top: dict[str, msgspec.Raw]) -> None:
    """Thinking blocks another dialect's model made reached this client sealed (``common.seal_signature``):
    the one that made them gets its own signature back, any other model none of them."""
    raw = top.get("messages")
    if raw is None or SEALED_MARK not in bytes(raw):
        return  # the common case: only this provider's own blocks, relayed untouched
    msgs = _decode(raw)
    model = _decode(top["model"])
    if not isinstance(msgs, list) or not isinstance(model, str):
        return
    kept_msgs = []
    for m in msgs:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            kept = []
            for b in content:
                kind = b.get("type") if isinstance(b, dict) else None
                key = _SIGNED.get(kind) if isinstance(kind, str) else None
                value = b.get(key) if key else None
                if isinstance(value, str):
                    fit = relayed_signature(value, model)
                    if fit is None:
                        continue
                    b = {**b, key: fit[0]}
                kept.append(b)
            if not kept:
                continue  # a turn that was only another model's thinking
            m = {**m, "content": kept}
        kept_msgs.append(m)
    top["messages"] = msgspec.Raw(_encode(kept_msgs))


def _last_tool_turn_lacks_thinking(messages: msgspec.Raw | None) -> bool:
    if messages is None:
        return False
    try:
        msgs = _msgs.decode(messages)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if not msgs or msgs[-1].role != "user" or not bytes(msgs[-1].content).lstrip().startswith(b"["):
        return False
    if not any(b.type == "tool_result" for b in _blocks.decode(msgs[-1].content)):
        return False
    for m in reversed(msgs):
        if m.role == "assistant":
            if not bytes(m.content).lstrip().startswith(b"["):
                return True
            blocks = _blocks.decode(m.content)
            return not blocks or blocks[0].type not in ("thinking", "redacted_thinking")
    return False


def rewrite_anthropic_beta(header_value: str, supports_thinking: bool) -> str:
    """Drop thinking-related betas for a model without thinking (others are kept in order)."""
    if supports_thinking or not header_value:
        return header_value
    kept = [b for b in (s.strip() for s in header_value.split(",")) if b and not b.startswith(_THINKING_BETAS)]
    return ",".join(kept)
