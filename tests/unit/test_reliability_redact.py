"""Secrets never reach logs, traces or error messages."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from streams.reliability.redact import REDACTED, ContentLog, RedactingFilter, Redactor, configure_logging, redact

OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
ANTHROPIC = "sk-ant-api03-" + "xY9_zW8-vU7tS6rQ5pO4" * 3
VIRTUAL = "wr-" + "Qm9vYmFyYmF6cXV4cXV1eA_-abcdEFGH1234567"


def test_key_shapes_are_redacted() -> None:
    for secret in (OPENAI, ANTHROPIC, VIRTUAL, "sk-" + "a" * 48, "AKIAABCDEFGHIJKLMNOP", "ghp_" + "a1" * 18):
        out = redact(f"calling upstream with {secret} failed")
        assert secret not in out and REDACTED in out and out.startswith("calling upstream with ")


def test_headers_and_assignments() -> None:
    samples = {
        "Authorization: Bearer abc.def-ghi_jkl": "abc.def-ghi_jkl",
        "x-api-key: s3cr3t-value-42": "s3cr3t-value-42",
        '{"api_key": "plainvalue123"}': "plainvalue123",
        "curl -H 'X-Api-Key=hunter2hunter2'": "hunter2hunter2",
        "password=correct-horse": "correct-horse",
    }
    for text, secret in samples.items():
        assert secret not in redact(text), text


def test_ordinary_text_is_untouched() -> None:
    text = "ask the model: skip tests? the sk- prefix, a task-key idea, bearer of news"
    assert redact(text) == text


def test_env_values_of_configured_providers_are_redacted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keyfile = tmp_path / "k"
    keyfile.write_text("file-secret-0000\n")
    settings = SimpleNamespace(
        providers=[SimpleNamespace(api_key_env="MY_UPSTREAM", api_key_file=None),
                   SimpleNamespace(api_key_env="SHORT", api_key_file=str(keyfile))],
        virtual_keys=[{"key_env": "TEAM"}],
    )
    env = {"MY_UPSTREAM": "oddly-shaped:key/with+chars", "SHORT": "x", "TEAM": "team-secret-xyz"}
    r = Redactor.from_settings(settings, env)
    out = r.redact("upstream said oddly-shaped:key/with+chars and file-secret-0000 and team-secret-xyz; x stays")
    assert "oddly-shaped" not in out and "file-secret" not in out and "team-secret" not in out
    assert out.endswith("x stays")  # short values are not treated as secrets


def test_redact_obj_and_headers() -> None:
    r = Redactor(["literal-secret-1"])
    obj = {"headers": {"Authorization": "Bearer zzz", "x-api-key": "k", "accept": "json"},
           "messages": [{"content": f"my key is {OPENAI}"}], "note": "literal-secret-1", "n": 3}
    out = r.redact_obj(obj)
    assert out["headers"]["Authorization"] == REDACTED and out["headers"]["x-api-key"] == REDACTED
    assert out["headers"]["accept"] == "json" and out["n"] == 3
    assert OPENAI not in str(out) and "literal-secret-1" not in str(out)
    assert r.redact_headers({"X-Api-Key": "k", "Host": "h"}) == {"X-Api-Key": REDACTED, "Host": "h"}


def test_logging_filter_redacts_message_args_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.redact")
    logger.propagate = False
    configure_logging(Redactor(["env-literal-secret"]), stream=stream, logger=logger)
    handler = configure_logging(Redactor(["env-literal-secret"]), stream=stream, logger=logger)
    assert logger.handlers == [handler]  # set up again: still one handler, one filter
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        logger.warning("upstream %s refused key %s", "env-literal-secret", ANTHROPIC)
        try:
            raise RuntimeError(f"bad header Authorization: Bearer {OPENAI}")
        except RuntimeError:
            logger.exception("call failed")
        # Records from child loggers pass through the handler too.
        logging.getLogger("test.redact.child").error("x-api-key: %s", VIRTUAL)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("env-literal-secret", ANTHROPIC, OPENAI, VIRTUAL):
        assert secret not in text
    assert "upstream [REDACTED] refused key sk-ant-[REDACTED]" in text
    assert "RuntimeError" in text and "Traceback" in text


def test_content_logging_is_off_by_default_and_redacted_when_on() -> None:
    assert ContentLog()("hello " + OPENAI) is None
    on = ContentLog(True, max_chars=30)
    out = on("my key " + OPENAI + " and a long tail " + "z" * 100)
    assert OPENAI not in out and "truncated" in out
    assert on({"content": VIRTUAL}) == {"content": "wr-" + REDACTED}
