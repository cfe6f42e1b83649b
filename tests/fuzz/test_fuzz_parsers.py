"""Fuzz the four ingress parsers: whatever JSON a client sends, ``parse_request`` either returns a
canonical request or raises ``TranslationError`` with a 4xx status, nothing else.

    FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz -p no:cacheprovider -q
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.translation.canonical import TranslationError
from tests.fuzz._fuzz import DERANDOMIZE, EXAMPLES, SEEDS, arbitrary_request, near_valid, sweep

DIALECTS = ("openai_chat", "openai_responses", "anthropic_messages", "gemini")


def _parse(dialect: str) -> Any:
    return importlib.import_module(f"streams.translation.{dialect}").parse_request


def _check(parse: Any, body: dict[str, Any]) -> bool:
    """True when parsed, False on a proper TranslationError; anything else fails the test."""
    try:
        parse(body)
    except TranslationError as exc:
        assert 400 <= exc.status < 500, f"TranslationError with status {exc.status}"
        assert isinstance(exc.message, str) and exc.message
        return False
    return True


@pytest.mark.parametrize("dialect", DIALECTS)
def test_seeds_parse(dialect: str) -> None:
    parse = _parse(dialect)
    for seed in SEEDS[dialect]:
        assert _check(parse, seed), seed  # the fuzzer's starting points are valid requests


@pytest.mark.parametrize("dialect", DIALECTS)
def test_type_confusion_sweep(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Deterministic: every field of every seed deleted, wrapped, unwrapped or given a value of another type."""
    parse = _parse(dialect)
    tried = 0
    for seed in SEEDS[dialect]:
        for body in sweep(seed):
            tried += 1
            try:
                _check(parse, body)
            except Exception as exc:
                raise AssertionError(f"{type(exc).__name__}: {exc} on {body!r}") from exc
    with capsys.disabled():
        print(f"\n[fuzz] {dialect}.parse_request sweep: {tried} single-field mutations")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fuzz_parser(dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    parse = _parse(dialect)
    counts = {"tried": 0, "parsed": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=st.one_of(near_valid(dialect), near_valid(dialect), arbitrary_request(dialect)))
    def run(body: dict[str, Any]) -> None:
        counts["tried"] += 1
        counts["parsed"] += _check(parse, body)

    run()
    with capsys.disabled():
        print(f"\n[fuzz] {dialect}.parse_request: {counts['tried']} inputs, {counts['parsed']} parsed, "
              f"{counts['tried'] - counts['parsed']} TranslationError")
    assert counts["tried"] >= min(EXAMPLES, 50)
    assert counts["parsed"] > 0  # the near-valid half really reaches the parser's happy path
