"""Same-dialect fast path: relay the client's body with only the routing-relevant fields rewritten.

The body is decoded one level deep (``dict[str, msgspec.Raw]``): untouched fields are re-emitted as
their original bytes, so a 76 KB Claude Code body costs a scan and a copy, not a full parse.
"""

from __future__ import annotations

import msgspec

from streams.translation.canonical import Dialect, TranslationError

_top = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encode = msgspec.json.Encoder().encode
_any = msgspec.json.Decoder()


class _Msg(msgspec.Struct):
    role: str = ""
    content: msgspec.Raw = msgspec.Raw(b'""')


class _Block(msgspec.Struct):
    type: str = ""


_msgs = msgspec.json.Decoder(list[_Msg])
_blocks = msgspec.json.Decoder(list[_Block])

_THINKING_BETAS = ("interleaved-thinking-", "effort-", "thinking-token-count-")


def rewrite_body(
    raw: bytes, dialect: Dialect | str, upstream_model: str, *, supports_thinking: bool, ensure_usage: bool
) -> bytes:
    try:
        top = _top.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TranslationError(f"request body is not a JSON object: {exc}", param="body") from None
    top["model"] = msgspec.Raw(_encode(upstream_model))
    if dialect == "anthropic_messages":
        _anthropic(top, supports_thinking)
    elif dialect == "openai_chat":
        if ensure_usage and _is_true(top.get("stream")):
            opts = _any.decode(top["stream_options"]) if "stream_options" in top else None
            opts = opts if isinstance(opts, dict) else {}
            if opts.get("include_usage") is not True:
                opts["include_usage"] = True
                top["stream_options"] = msgspec.Raw(_encode(opts))
        if not supports_thinking:
            top.pop("reasoning_effort", None)
    elif dialect == "openai_responses" and not supports_thinking:
        top.pop("reasoning", None)
        if "include" in top:  # encrypted reasoning is rejected by models without reasoning
            inc = _any.decode(top["include"])
            if isinstance(inc, list):
                kept = [i for i in inc if i != "reasoning.encrypted_content"]
                if kept != inc:
                    top["include"] = msgspec.Raw(_encode(kept))
    return _encode(top)


def _is_true(raw: msgspec.Raw | None) -> bool:
    return raw is not None and bytes(raw).strip() == b"true"


def _anthropic(top: dict[str, msgspec.Raw], supports_thinking: bool) -> None:
    if "thinking" not in top and "output_config" not in top and "context_management" not in top:
        return
    if supports_thinking:
        th = _any.decode(top["thinking"]) if "thinking" in top else None
        if not (isinstance(th, dict) and th.get("type") in ("enabled", "adaptive")):
            return
        if not _last_tool_turn_lacks_thinking(top.get("messages")):
            return
        # The pending tool calls were made by a model without (valid) thinking: Anthropic would reject
        # the request with thinking on, so this one request goes without it.
    top.pop("thinking", None)
    if "output_config" in top:
        oc = _any.decode(top["output_config"])
        if isinstance(oc, dict):
            oc.pop("effort", None)
            if oc:
                top["output_config"] = msgspec.Raw(_encode(oc))
            else:
                del top["output_config"]
    if "context_management" in top:
        cm = _any.decode(top["context_management"])
        if isinstance(cm, dict):
            edits = [e for e in cm.get("edits") or [] if not str(e.get("type", "")).startswith("clear_thinking")]
            if edits:
                cm["edits"] = edits
                top["context_management"] = msgspec.Raw(_encode(cm))
            else:
                del top["context_management"]


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
