import json

import pytest
from fastavro.schema import parse_schema

from streams.events.codec import MAGIC, DecodeError, EventCodec, _fingerprint, schemas_dir
from streams.infra.package_data import files_ending


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec()


def trace() -> dict:
    return {
        "event_id": "t-1", "ts_ms": 1_700_000_000_000, "request_id": "r-1", "session_id": "s-1",
        "decision_id": "d-1", "client_dialect": "anthropic_messages", "provider_dialect": "openai_chat",
        "model": "gpt-mini-sim", "provider": "sim-openai", "status": 200, "input_tokens": 1200,
        "output_tokens": 80, "cost_usd": 0.00046, "task_type": "debugging", "client": "claude_code",
    }


def test_every_event_has_a_documented_schema(codec: EventCodec) -> None:
    assert set(codec.current) == {"RouteRequest", "RouteResponse", "Decision", "Outcome", "Trace", "PolicySnapshot"}
    for path in files_ending(schemas_dir(), ".avsc"):
        schema = json.loads(path.read_text())
        assert schema.get("doc"), path.name
        assert all(f.get("doc") for f in schema["fields"]), f"undocumented field in {path.name}"


def test_round_trip_uses_single_object_encoding(codec: EventCodec) -> None:
    data = codec.encode("Trace", trace())
    assert data[:2] == MAGIC
    assert data[2:10] == codec.current["Trace"].fingerprint
    name, value = codec.decode(data)
    assert name == "Trace"
    assert {k: value[k] for k in trace()} == trace()
    assert value["attempts"] == 1  # defaults filled


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # Avro's schema-tests: the CRC-64-AVRO fingerprint of "null" is 7195948357588979594, little endian.
    assert _fingerprint(parse_schema("null")) == (7195948357588979594).to_bytes(8, "little")


def test_old_schema_version_stays_readable(codec: EventCodec) -> None:
    old = next(v for v in codec.by_fingerprint.values()
               if v.name == "Trace" and v.fingerprint != codec.current["Trace"].fingerprint)
    old_event = {k: v for k, v in trace().items() if k not in ("task_type", "client", "cached_tokens")}
    name, value = codec.decode(codec.encode_with(old, old_event))
    assert name == "Trace"
    assert value["model"] == "gpt-mini-sim"
    assert value["client"] == "" and value["task_type"] == "" and value["cached_tokens"] == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "bad magic"),
        (b"{\"json\": true}", "bad magic"),
        (MAGIC + b"\x00" * 8 + b"\x02", "unknown schema fingerprint"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(codec: EventCodec, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data)


def test_corrupt_body_is_a_decode_error(codec: EventCodec) -> None:
    good = codec.encode("Trace", trace())
    with pytest.raises(DecodeError, match="corrupt Trace"):
        codec.decode(good[:14])


def test_missing_required_field_fails_at_encode(codec: EventCodec) -> None:
    with pytest.raises(ValueError):
        codec.encode("Outcome", {"event_id": "x"})


def test_route_request_from_before_gemini_stays_readable(codec: EventCodec) -> None:
    """``dialect`` gained the ``gemini`` symbol; a RouteRequest written with the older enum still decodes."""
    old = next(v for v in codec.by_fingerprint.values()
               if v.name == "RouteRequest" and v.fingerprint != codec.current["RouteRequest"].fingerprint)
    event = {"event_id": "e1", "ts_ms": 1, "request_id": "r1", "session_id": "s1", "dialect": "anthropic_messages",
             "body": "{}", "hints": {}, "reply_topic": "router.responses", "mode": "decide"}
    assert codec.decode(codec.encode_with(old, event)) == ("RouteRequest", event)
    gemini = {**event, "dialect": "gemini"}
    assert codec.decode(codec.encode("RouteRequest", gemini)) == ("RouteRequest", gemini)
