"""Gemini parts <-> canonical parts, function-call ids, and Gemini's OpenAPI-style schemas.

Gemini's function results carry the function's name and, only when the client set one, an ``id``; the
canonical form pairs every result with its call by id. ``CallIds`` hands out ids for calls that have
none (stable: from the call's position in the conversation, so a re-sent history gets the same ids
and a provider's prompt cache still hits) and pairs each result with the earliest unanswered call of
the same name.
"""

from __future__ import annotations

import mimetypes
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
)
from streams.translation.common import expect, string_field

_decode = msgspec.json.decode
_encode = msgspec.json.encode

# What gemini-cli itself puts on a function call that has no signature (a call made by another
# model): Gemini 3 validates the signature of the first call of each model turn and accepts this one.
SYNTHETIC_THOUGHT_SIGNATURE = "skip_thought_signature_validator"


class CallIds:
    """Ids of one conversation's function calls, and which call each function response answers."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []  # (id, name) of calls not answered yet, oldest first

    def call(self, fn: dict[str, Any], turn: int, index: int) -> str:
        cid = fn.get("id")
        if not isinstance(cid, str) or not cid:
            cid = f"call_{turn}_{index}"
        self._open.append((cid, str(fn.get("name") or "")))
        return cid

    def result(self, fn: dict[str, Any], turn: int, index: int) -> str:
        name = fn.get("name")
        cid = fn.get("id")
        for pos, (open_id, open_name) in enumerate(self._open):
            if (isinstance(cid, str) and cid and open_id == cid) or (not cid and open_name == name):
                del self._open[pos]
                return open_id
        if isinstance(cid, str) and cid:
            return cid
        return f"result_{turn}_{index}"  # answers no call we saw: kept, with an id of its own


def lower_schema_types(schema: Any) -> Any:
    """A Gemini ``Schema`` (``"type": "STRING"``) as JSON Schema (``"type": "string"``)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else lower_schema_types(v)) for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [lower_schema_types(v) for v in schema]
    return schema


def media_part(blob: Any, where: str, *, by_uri: bool) -> ImagePart | DocumentPart:
    """``inlineData`` {mimeType, data} or ``fileData`` {mimeType, fileUri} as an image or a document."""
    expect(isinstance(blob, dict), f"{where} must be an object", where)
    media = blob.get("mimeType") or blob.get("mime_type")
    media = media if isinstance(media, str) else None
    if by_uri:
        url = string_field(blob.get("fileUri") or blob.get("file_uri"), f"{where}.fileUri")
        return ImagePart(url=url, media_type=media) if (media or "").startswith("image/") else DocumentPart(url=url)
    data = string_field(blob.get("data"), f"{where}.data")
    if (media or "").startswith("image/"):
        return ImagePart(data=data, media_type=media)
    return DocumentPart(data=data, media_type=media)


def given_call_id(fn: dict[str, Any]) -> str | None:
    """The ``id`` a client or provider set on a functionCall / functionResponse, if any."""
    cid = fn.get("id")
    return cid if isinstance(cid, str) and cid else None


def call_arguments(args: Any) -> str:
    return _encode(args if isinstance(args, dict) else {}).decode()


def result_content(response: Any) -> tuple[list[TextPart | ImagePart | DocumentPart], bool]:
    """A ``functionResponse.response`` object as tool-result text, and whether it reports an error.

    gemini-cli answers ``{"output": "..."}`` (or ``{"error": "..."}``); anything else goes as its JSON.
    """
    if isinstance(response, dict) and len(response) == 1:
        (key, value), = response.items()
        if key in ("output", "error", "content", "result") and isinstance(value, str):
            return [TextPart(value)], key == "error"
    if isinstance(response, dict) and set(response) == {"error"}:
        return [TextPart(_encode(response["error"]).decode())], True
    return [TextPart(_encode(response if response is not None else {}).decode())], False


def tool_result(fn: dict[str, Any], call_id: str, extra_parts: list[ImagePart | DocumentPart]) -> ToolResultPart:
    content, is_error = result_content(fn.get("response"))
    return ToolResultPart(call_id, [*content, *extra_parts], is_error=is_error)


# ---------------------------------------------------------------- canonical -> Gemini


def arguments_object(arguments: str) -> dict[str, Any]:
    """A call's JSON argument text as the object Gemini wants (a model's broken JSON stays visible)."""
    try:
        args = _decode(arguments) if arguments.strip() else {}
    except msgspec.DecodeError:
        return {"_raw_arguments": arguments}
    return args if isinstance(args, dict) else {"value": args}


def render_media(p: ImagePart | DocumentPart) -> dict[str, Any]:
    if p.data is not None:
        if isinstance(p, DocumentPart) and (p.media_type or "").startswith("text/"):
            return {"text": p.data}  # a plain-text document carries raw text (Anthropic's convention)
        return {"inlineData": {"mimeType": p.media_type or "application/octet-stream", "data": p.data}}
    url = p.url or ""
    guessed = mimetypes.guess_type(url)[0]
    fallback = "image/jpeg" if isinstance(p, ImagePart) else "application/pdf"
    return {"fileData": {"mimeType": p.media_type or guessed or fallback, "fileUri": url}}


def render_call(p: ToolCallPart, *, signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"id": p.id, "name": p.name, "args": arguments_object(p.arguments)}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def render_result(p: ToolResultPart, name: str) -> list[dict[str, Any]]:
    """A ``functionResponse`` part, then the result's images and documents as parts of their own."""
    texts = [c.text for c in p.content if isinstance(c, TextPart)]
    text = "\n".join(texts)
    response = {"error": text} if p.is_error else {"output": text}
    parts: list[dict[str, Any]] = [{"functionResponse": {"id": p.tool_call_id, "name": name, "response": response}}]
    parts.extend(render_media(c) for c in p.content if isinstance(c, ImagePart | DocumentPart))
    return parts


def render_thought(p: ThinkingPart) -> dict[str, Any] | None:
    if not p.text:
        return None
    part: dict[str, Any] = {"text": p.text, "thought": True}
    if p.signature:
        part["thoughtSignature"] = p.signature
    return part


def render_model_parts(parts: list[Part], *, keep_thoughts: bool) -> list[dict[str, Any]]:
    """An assistant turn's parts; the first function call is signed when no Gemini signature came with it."""
    out: list[dict[str, Any]] = []
    signed = False
    for p in parts:
        if isinstance(p, TextPart):
            if p.text:
                out.append({"text": p.text})
        elif isinstance(p, ThinkingPart):
            thought = render_thought(p) if keep_thoughts else None
            if thought is not None:
                out.append(thought)
        elif isinstance(p, ToolCallPart):
            out.append(render_call(p, signature=None if signed else SYNTHETIC_THOUGHT_SIGNATURE))
            signed = True
        elif isinstance(p, ImagePart | DocumentPart):
            out.append(render_media(p))
    return out
