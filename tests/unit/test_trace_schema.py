"""The typed trace is the Avro schema: same fields, order, nullability and defaults."""

from __future__ import annotations

import json
from importlib.resources import files

import msgspec

from streams.events.codec import EventCodec
from streams.ingress.trace import Trace

_AVRO = {"string": str, "long": int, "int": int, "double": float, "boolean": bool}


def test_trace_struct_matches_trace_avsc() -> None:
    schema = json.loads(files("streams.events").joinpath("schemas/trace.avsc").read_text())
    info = msgspec.inspect.type_info(Trace)
    assert isinstance(info, msgspec.inspect.StructType)
    assert [f.name for f in info.fields] == [f["name"] for f in schema["fields"]]
    for field, avro in zip(info.fields, schema["fields"], strict=True):
        t = avro["type"]
        nullable = isinstance(t, list) and "null" in t
        base = next(x for x in t if x != "null") if isinstance(t, list) else t
        expected = msgspec.inspect.type_info(_AVRO[base] | None if nullable else _AVRO[base])
        assert field.type == expected, field.name
        if "default" in avro:
            assert field.default == avro["default"], field.name
        else:
            assert field.required, field.name


def test_a_trace_encodes_and_reads_back_with_its_key() -> None:
    codec = EventCodec()
    trace = Trace(event_id="e", ts_ms=1, request_id="r", session_id="s", decision_id="d", client_dialect="openai_chat",
                  provider_dialect="anthropic_messages", model="m", provider="p", status=200, key_id="k-1")
    name, value = codec.decode(codec.encode("Trace", trace.to_event()))
    assert name == "Trace" and value == trace.to_event()
