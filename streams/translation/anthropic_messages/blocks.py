"""Anthropic content blocks <-> canonical parts (both ways), and the tool ids Anthropic accepts."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from streams.translation.canonical import (
    DocumentPart,
    ImagePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    TranslationError,
)
from streams.translation.common import drop, expect, string_field

_decode = msgspec.json.decode
_BAD_ID = re.compile(r"[^a-zA-Z0-9_-]")


def _source(block: dict[str, Any], where: str) -> tuple[str | None, str | None, str | None]:
    """(url, data, media_type) of an image/document ``source``."""
    src: Any = block.get("source")
    expect(isinstance(src, dict), f"{where}.source must be an object", f"{where}.source")
    kind = src.get("type")
    if kind == "url":
        return string_field(src.get("url"), f"{where}.source.url"), None, None
    if kind in ("base64", "text"):
        media = src.get("media_type") or ("text/plain" if kind == "text" else None)
        return None, string_field(src.get("data"), f"{where}.source.data"), media
    raise TranslationError(f"{where}.source.type {kind!r} is not supported", param=f"{where}.source.type")


def media_part(block: dict[str, Any], where: str) -> ImagePart | DocumentPart:
    url, data, media = _source(block, where)
    if block["type"] == "image":
        return ImagePart(url=url, data=data, media_type=media)
    return DocumentPart(url=url, data=data, media_type=media, title=block.get("title"))


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A string or a list of typed blocks, as a list of blocks (4xx for anything else)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    expect(isinstance(content, list), f"{where} must be a string or a list", where)
    for i, b in enumerate(content):
        expect(
            isinstance(b, dict) and isinstance(b.get("type"), str),
            f"{where}[{i}] must be a content block",
            f"{where}[{i}]",
        )
    return content


def parse_tool_result(block: dict[str, Any], where: str, extra: dict[str, Any]) -> ToolResultPart:
    content: list[TextPart | ImagePart | DocumentPart] = []
    raw = block.get("content")
    if raw is not None:
        for j, b in enumerate(content_blocks(raw, f"{where}.content")):
            if b["type"] == "text":
                content.append(TextPart(string_field(b.get("text"), f"{where}.content[{j}].text")))
            elif b["type"] in ("image", "document"):
                content.append(media_part(b, f"{where}.content[{j}]"))
            else:
                drop(extra, f"tool_result content block {b['type']!r} at {where} dropped")
    return ToolResultPart(
        string_field(block.get("tool_use_id"), f"{where}.tool_use_id"), content, is_error=bool(block.get("is_error"))
    )


def tool_id(value: str) -> str:
    """Anthropic wants ``^[a-zA-Z0-9_-]+$`` ids; other providers' ids are mapped the same way both ways."""
    if not value:
        return "toolu_empty"
    return _BAD_ID.sub("_", value) if _BAD_ID.search(value) else value


def _render_media(p: ImagePart | DocumentPart) -> dict[str, Any]:
    if p.data is not None:
        if isinstance(p, DocumentPart) and (p.media_type or "").startswith("text/"):
            src = {"type": "text", "media_type": "text/plain", "data": p.data}
        else:
            src = {"type": "base64", "media_type": p.media_type or "application/octet-stream", "data": p.data}
    else:
        src = {"type": "url", "url": p.url or ""}
    block: dict[str, Any] = {"type": p.type, "source": src}
    if isinstance(p, DocumentPart) and p.title:
        block["title"] = p.title
    return block


def render_part(p: Part, keep_thinking: bool) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text} if p.text else None  # Anthropic rejects empty text blocks
    if isinstance(p, ImagePart | DocumentPart):
        return _render_media(p)
    if isinstance(p, ToolCallPart):
        try:
            args = _decode(p.arguments) if p.arguments.strip() else {}
        except msgspec.DecodeError:
            args = {"_raw_arguments": p.arguments}  # a model's broken JSON: keep it visible, stay valid
        if not isinstance(args, dict):
            args = {"value": args}
        return {"type": "tool_use", "id": tool_id(p.id), "name": p.name, "input": args}
    if isinstance(p, ToolResultPart):
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(p.tool_call_id)}
        if len(p.content) == 1 and isinstance(p.content[0], TextPart):
            block["content"] = p.content[0].text
        else:
            block["content"] = [b for b in (render_part(c, False) for c in p.content) if b is not None]
        if p.is_error:
            block["is_error"] = True
        return block
    if isinstance(p, ThinkingPart):
        if not keep_thinking or not p.signature:
            return None
        if p.redacted:
            return {"type": "redacted_thinking", "data": p.signature}
        return {"type": "thinking", "thinking": p.text, "signature": p.signature}
    return None
