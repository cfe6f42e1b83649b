"""The official OpenAI OpenAPI spec as a JSON Schema validator of what the gateway answers.

The spec is OpenAPI 3.1, whose schema objects are JSON Schema 2020-12 with a few OpenAPI extras:
``x-*`` keys, ``discriminator`` and ``example`` are annotations a validator ignores; ``nullable: true``
(left over from OpenAPI 3.0 in some schemas) means "or null", which plain JSON Schema would ignore,
so it is rewritten here as ``anyOf: [schema, {type: null}]``. Nothing is loosened beyond that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_BASE = "urn:openai-openapi"


def _nullable_as_any_of(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` in JSON Schema terms, everywhere below ``node``."""
    if isinstance(node, list):
        return [_nullable_as_any_of(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_as_any_of(v) for k, v in node.items()}
    if out.get("nullable") is True:  # a property *named* "nullable" holds a schema, never True
        del out["nullable"]
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _where(error: ValidationError) -> str:
    return error.json_path


class OpenAPISpec:
    """Validators for the spec's component schemas, and the stream event variant each ``type`` names."""

    def __init__(self, path: Path) -> None:
        spec = json.loads(path.read_text())
        components = _nullable_as_any_of(spec["components"])
        document = {"components": components}
        registry: Registry[Any] = Registry().with_resource(
            _BASE, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self._registry = registry
        self._schemas: dict[str, Any] = components["schemas"]
        self._validators: dict[str, Draft202012Validator] = {}
        # ResponseStreamEvent is an anyOf of $refs, each with a one-value ``type`` enum.
        self.stream_event_schema: dict[str, str] = {}
        for branch in self._schemas["ResponseStreamEvent"]["anyOf"]:
            name = branch["$ref"].rsplit("/", 1)[-1]
            for kind in self._variant_types(name):
                self.stream_event_schema[kind] = name

    def _variant_types(self, name: str) -> list[str]:
        schema = self._schemas[name]
        for part in [schema, *schema.get("allOf", [])]:
            if "$ref" in part:
                return self._variant_types(part["$ref"].rsplit("/", 1)[-1])
            enum = part.get("properties", {}).get("type", {}).get("enum")
            if enum:
                return list(enum)
        return []

    def has(self, name: str) -> bool:
        return name in self._schemas

    def _validator(self, name: str) -> Draft202012Validator:
        validator = self._validators.get(name)
        if validator is None:
            if name not in self._schemas:
                raise KeyError(f"no component schema {name!r} in the spec")
            ref = {"$ref": f"{_BASE}#/components/schemas/{name}"}
            validator = self._validators[name] = Draft202012Validator(ref, registry=self._registry)
        return validator

    def errors(self, name: str, payload: Any) -> list[str]:
        """Each violation of schema ``name`` as ``"$.json.path: what is wrong"`` (empty: valid)."""
        out = []
        for error in self._validator(name).iter_errors(payload):
            best = best_match([error])  # into anyOf/oneOf: the branch that came closest
            out.append(f"{_where(best)}: {best.message[:300]}")
        return out

    def stream_event_errors(self, event: Any) -> tuple[str, list[str]]:
        """(schema name, violations) of one Responses stream event, checked against the
        ``ResponseStreamEvent`` member its ``type`` names."""
        kind = event.get("type") if isinstance(event, dict) else None
        name = self.stream_event_schema.get(kind) if isinstance(kind, str) else None
        if name is None:
            return "ResponseStreamEvent", [f"$.type: {kind!r} is no ResponseStreamEvent type"]
        return name, self.errors(name, event)


def official_spec() -> OpenAPISpec:
    """The spec in ``shared/reference`` (CI lays shared/ beside the checkout): missing is a failure,
    not a skip, so a run without it cannot pass unchecked."""
    from tests.conftest import shared_dir

    path = shared_dir() / "reference" / "openai-openapi.json"
    assert path.is_file(), f"{path} is missing: the conformance checks need the official OpenAI spec there"
    return OpenAPISpec(path)
