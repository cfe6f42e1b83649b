"""Secret redaction for logs, traces and error messages; content logging off by default.

``Redactor`` removes API keys by shape (``sk-…``, ``sk-ant-…``, ``wr-…`` virtual keys, Bearer tokens,
``x-api-key: …`` / ``"api_key": "…"`` values, common cloud tokens) and by value: the values of the
configured providers' ``api_key_env`` vars, whatever they look like. ``RedactingFilter`` applies it to
every log record (message, args, exception text) that passes through a handler.

Prompts and completions are not logged unless ``server.log_content`` is on; ``ContentLog`` is the one
gate for that and redacts (and truncates) what it lets through.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

REDACTED = "[REDACTED]"

# Header names whose whole value is a secret.
SENSITIVE_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie",
        "set-cookie", "openai-api-key", "anthropic-api-key",
    }
)

# (pattern, replacement). Order matters: the specific shapes come before the generic ones.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Provider and router keys by shape; keep the kind visible so a log still says which key was involved.
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-" + REDACTED),
    (re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"), "sk-" + REDACTED),
    (re.compile(r"\bwr-[A-Za-z0-9_\-]{16,}"), "wr-" + REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AKIA" + REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "AIza" + REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "gh_" + REDACTED),
    (re.compile(r"\bxox[abpr]-[A-Za-z0-9\-]{10,}"), "xox-" + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"), REDACTED),  # JWT
    # "Bearer <token>" / "Basic <token>" anywhere (headers, curl lines, exception text).
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"), r"\1 " + REDACTED),
    # key: value / key=value / "key": "value" for secret-looking names.
    (
        re.compile(
            r"""(?ix)
            (["']?\b(?:authorization|x-api-key|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|secret(?:[_-]?key)?
                |client[_-]?secret|password|passwd|x-goog-api-key)\b["']?
             \s*[:=]\s*
             ["']?)
            ([^\s"',;}&]{4,})
            """
        ),
        r"\1" + REDACTED,
    ),
]

_MIN_LITERAL = 8  # shorter env values ("x", "test") would redact ordinary words


class Redactor:
    """Removes secrets from strings and JSON-like values. Cheap when there is nothing to redact."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        lits = sorted({s for s in literals if s and len(s) >= _MIN_LITERAL}, key=len, reverse=True)
        self._literal_re = re.compile("|".join(re.escape(s) for s in lits)) if lits else None

    @classmethod
    def from_settings(cls, settings: Any, env: Mapping[str, str] | None = None) -> Redactor:
        """Also redact the values of every configured provider's ``api_key_env`` (and ``api_key_file``)."""
        env = os.environ if env is None else env
        literals: list[str] = []
        for p in getattr(settings, "providers", []) or []:
            name = getattr(p, "api_key_env", None)
            if name and env.get(name):
                literals.append(env[name])
            path = getattr(p, "api_key_file", None)
            if path and os.path.isfile(path):
                try:
                    with open(path) as f:
                        literals.append(f.read().strip())
                except OSError:
                    pass
        for k in getattr(settings, "virtual_keys", []) or []:
            name = k.get("key_env") if isinstance(k, Mapping) else getattr(k, "key_env", None)
            if name and env.get(name):
                literals.append(env[name])
        return cls(literals)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._literal_re is not None:
            text = self._literal_re.sub(REDACTED, text)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def redact_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: (REDACTED if k.lower() in SENSITIVE_HEADERS else self.redact(v)) for k, v in headers.items()}

    def redact_obj(self, value: Any, _depth: int = 0) -> Any:
        """A copy of a JSON-like value with secret-named fields blanked and every string redacted."""
        if _depth > 64:
            return REDACTED  # absurd nesting: drop rather than recurse forever
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str) and _secret_name(k) and isinstance(v, str | bytes):
                    out[k] = REDACTED
                else:
                    out[k] = self.redact_obj(v, _depth + 1)
            return out
        if isinstance(value, list | tuple):
            return type(value)(self.redact_obj(v, _depth + 1) for v in value)
        if isinstance(value, bytes):
            return self.redact(value.decode("utf-8", "replace")).encode()
        return value


_SECRET_NAME = re.compile(
    r"(?i)^(authorization|proxy-authorization|x-api-key|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|"
    r"secret|secret[_-]?key|client[_-]?secret|password|passwd|cookie|set-cookie|x-goog-api-key)$"
)


def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.match(name))


_DEFAULT = Redactor()


def redact(text: str) -> str:
    """Redaction by shape only (no configured literals)."""
    return _DEFAULT.redact(text)


class RedactingFilter(logging.Filter):
    """Rewrites each record so its message, args and exception text carry no secrets.

    Attach it to handlers (``configure_logging``): a filter on a logger does not see records of its
    child loggers.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or _DEFAULT
        self._fmt = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = r.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._fmt.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(redactor: Redactor | None = None, *, level: int = logging.WARNING,
                      stream: IO[str] | None = None, logger: logging.Logger | None = None) -> logging.Handler:
    """A process's one logging set-up, done once when it knows its settings: one handler on ``logger``
    (root by default) that redacts secrets from every record. Everything else, uvicorn included
    (``HttpServer`` gives it no handlers of its own), propagates to it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactingFilter(redactor))
    target = logger or logging.getLogger()
    for old in list(target.handlers):
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(level)
    return handler


class ContentLog:
    """The gate for logging or tracing prompt/completion content: off unless ``server.log_content``."""

    def __init__(self, enabled: bool = False, redactor: Redactor | None = None, max_chars: int = 4000) -> None:
        self.enabled = enabled
        self.redactor = redactor or _DEFAULT
        self.max_chars = max_chars

    def __call__(self, content: Any) -> Any:
        """``None`` when content logging is off; else a redacted, truncated copy."""
        if not self.enabled or content is None:
            return None
        if isinstance(content, str):
            text = self.redactor.redact(content)
            if len(text) > self.max_chars:
                text = text[: self.max_chars] + f"… [{len(text) - self.max_chars} chars truncated]"
            return text
        return self.redactor.redact_obj(content)
