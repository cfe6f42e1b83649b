"""The one error path: JSON limits before decoding, error shapes by dialect and path, max_tokens
ranges, upstream credential failures, header values."""

from __future__ import annotations

import json

import msgspec
import pytest

from streams.ingress.errors import (
    MAX_JSON_DEPTH,
    OWN,
    BadRequest,
    dialect_for_path,
    error_body,
    json_shape_problem,
    load_json_object,
    max_tokens_problem,
    upstream_auth_failure,
)
from streams.ingress.http import header_safe, header_text


def refusal(raw: bytes) -> tuple[int, str]:
    with pytest.raises(BadRequest) as info:
        load_json_object(raw)
    return info.value.status, info.value.message


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 100_000,  # unbalanced: the decoder's own guard answers
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
])
def test_deep_json_is_a_400_not_a_recursion_error(raw: bytes) -> None:
    status, message = refusal(raw)
    assert status == 400 and "nested too deeply" in message


def test_depth_at_the_limit_and_brackets_in_strings_pass() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_shape_problem(at_limit) is None
    code = {"model": "m", "messages": [{"role": "user", "content": "f(a[0]) { return [[[" * 200 + "]]]" * 200}]}
    assert load_json_object(json.dumps(code).encode())["model"] == "m"


def test_too_many_values_is_a_413_before_decoding() -> None:
    tiny = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}] * 480_000}).encode()
    status, message = refusal(tiny)
    assert status == 413 and "too complex" in message
    numbers = b"[" + b"1," * 2_000_000 + b"1]"
    assert refusal(numbers)[0] == 413
    # Big but few values (an image, a long file): accepted.
    image = json.dumps({"model": "m", "messages": [{"role": "user", "content": "A" * 8_000_000}]}).encode()
    assert json_shape_problem(image) is None


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"model": "m", "x": "\xff\xfe"}', "not valid UTF-8"),
    (b'{"model": "m", "x": "\xc3"}', "not valid UTF-8"),
    (b'{"model": "m"', "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"a": 1e400}', "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
])
def test_bad_bytes_are_400s_naming_why(raw: bytes, why: str) -> None:
    status, message = refusal(raw)
    assert status == 400 and why in message


def test_error_shapes_by_path() -> None:
    assert dialect_for_path("/v1/chat/completions") == "openai_chat"
    assert dialect_for_path("/v1/responses/abc") == "openai_responses"
    assert dialect_for_path("/v1/messages/count_tokens") == "anthropic_messages"
    assert dialect_for_path("/v1beta/models/gemini-2.5-pro:streamGenerateContent") == "gemini"
    assert dialect_for_path("/v1/feedback") == OWN and dialect_for_path("/nope") == OWN
    anth = msgspec.json.decode(error_body("anthropic_messages", 404, "no such endpoint"))
    assert anth == {"type": "error", "error": {"type": "not_found_error", "message": "no such endpoint"}}
    own = msgspec.json.decode(error_body(OWN, 401, "missing API key"))
    assert own["error"]["message"] == "missing API key" and own["error"]["type"] == "authentication_error"
    gemini = msgspec.json.decode(error_body("gemini", 429, "slow down"))
    assert gemini == {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}


def test_max_tokens_range() -> None:
    assert max_tokens_problem(None, 1000) is None
    assert max_tokens_problem(1000, 1000) is None
    for value in (0, -1):
        p = max_tokens_problem(value, 1000)
        assert p is not None and p.status == 400 and p.param == "max_tokens" and "at least 1" in p.message
    p = max_tokens_problem(10**400, 1000, "max_output_tokens")
    assert p is not None and p.param == "max_output_tokens" and "401-digit" in p.message and len(p.message) < 100
    assert max_tokens_problem(1001, 1000) is not None
    assert max_tokens_problem(5_000_000, None) is None and max_tokens_problem(10**8, None) is not None


def test_upstream_credential_failure_names_the_provider() -> None:
    p = upstream_auth_failure("anthropic", 401)
    assert p is not None and p.status == 502 and "'anthropic'" in p.message and "router" in p.message
    assert upstream_auth_failure("openai", 403) is not None
    assert upstream_auth_failure("openai", 429) is None and upstream_auth_failure("openai", 500) is None


def test_header_text_drops_what_a_header_cannot_carry() -> None:
    assert header_text("task-7") == "task-7"
    assert header_text("task-7\r\nx-injected: 1\r\n") == "task-7x-injected: 1"
    assert header_text("a\x00b\x7fc\td") == "abc\td"
    assert header_text("caf\u00e9 \u65e5") == "caf\u00e9 ?"
    assert len(header_text("x" * 10_000)) == 256
    assert header_text(header_text("a\nb")) == header_text("a\nb")  # stable: the same session every time
    assert header_safe("ok") and not header_safe("a\nb") and not header_safe("\u65e5")
