"""Avro single-object encoding of the router's events, readable without a schema registry.

Wire format (Avro spec, "single object encoding"): ``C3 01`` + the writer schema's 8-byte
CRC-64-AVRO fingerprint (little endian) + the Avro binary body. A reader resolves the writer schema by
fingerprint among every schema version it knows (``streams/events/schemas/*.avsc`` and its
``history/``) and reads into the current schema, so events written with an older version stay readable.
The schemas are package data, found through ``importlib.resources`` in a checkout and in a wheel alike.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from streams.infra.package_data import files_ending, package_folder

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class DecodeError(ValueError):
    """Bytes that are not a known event: the reason goes to router.dlq."""


def schemas_dir() -> Traversable:
    return package_folder("streams.events", "schemas")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    name: str  # record name, e.g. "Trace"
    parsed: dict[str, Any]
    fingerprint: bytes  # 8 bytes, little endian as on the wire


def _fingerprint(parsed: dict[str, Any]) -> bytes:
    # fastavro's hex string already lists the bytes in wire (little-endian) order: for "null" it gives
    # 8a8f25cce724dd63, i.e. 0x63dd24e7cc258f8a, the spec's test vector 7195948357588979594.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _load(path: Traversable) -> SchemaVersion:
    raw = json.loads(path.read_text())
    # The fingerprint comes from a clean parse; the stored copy keeps fastavro's parse hint, without
    # which every schemaless_reader/writer call re-parses the schema (~55 µs per event instead of ~20).
    clean = cast(dict[str, Any], parse_schema(raw, _write_hint=False))
    name = clean["name"].rsplit(".", 1)[-1]
    hinted = cast(dict[str, Any], parse_schema(raw))
    return SchemaVersion(name=name, parsed=hinted, fingerprint=_fingerprint(clean))


class EventCodec:
    """Encodes dicts as single-object Avro and decodes any known schema version into the current one."""

    def __init__(self, directory: Traversable | None = None) -> None:
        directory = directory or schemas_dir()
        self.current: dict[str, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in files_ending(directory, ".avsc"):
            v = _load(path)
            self.current[v.name] = v
            self.by_fingerprint[v.fingerprint] = v
        for path in files_ending(directory / "history", ".avsc"):
            v = _load(path)
            self.by_fingerprint.setdefault(v.fingerprint, v)
        if not self.current:
            raise FileNotFoundError(f"no Avro schemas in {directory}")

    def encode(self, record_name: str, value: dict[str, Any]) -> bytes:
        schema = self.current[record_name]
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        fastavro.schemaless_writer(buf, schema.parsed, value)
        return buf.getvalue()

    def encode_with(self, schema: SchemaVersion, value: dict[str, Any]) -> bytes:
        """Encode with a specific (e.g. older) schema version; used by evolution tests and replays."""
        buf = io.BytesIO(MAGIC + schema.fingerprint)
        buf.seek(HEADER_LEN)
        fastavro.schemaless_writer(buf, schema.parsed, value)
        return buf.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Return (record name, value in the current schema); raise DecodeError with the reason."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (bad magic)")
        writer = self.by_fingerprint.get(bytes(data[2:HEADER_LEN]))
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
        reader = self.current.get(writer.name, writer)
        try:
            value = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER_LEN:]), writer.parsed, reader.parsed
            )
        except Exception as exc:  # fastavro raises several types on corrupt bodies
            raise DecodeError(f"corrupt {writer.name} body: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise DecodeError(f"{writer.name} body is not a record")
        return writer.name, value

    def decode_as(self, record_name: str, data: bytes) -> dict[str, Any]:
        name, value = self.decode(data)
        if name != record_name:
            raise DecodeError(f"expected {record_name}, got {name}")
        return value
