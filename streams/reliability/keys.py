"""Virtual API keys for clients: issued by the router, stored hashed, scoped, revocable.

A key looks like ``wr-<43 url-safe chars>`` (256 random bits) and is shown once, at creation. At rest only
``HMAC-SHA256(salt, key)`` is kept (``<data_dir>/keys.json``, written atomically, mode 0600), with the salt
a per-deployment secret (env ``WEAVE_KEY_SALT`` or ``<data_dir>/keys.salt``). The keys are random and
long, so a keyed fast hash is the right tool (a slow KDF like scrypt protects low-entropy passwords, and
would cost milliseconds on every request); a stolen keys.json without the salt reveals nothing usable.

Keys may also be declared in the config (``virtual_keys:``) by env var or by plain sha256, for
deployments that manage secrets elsewhere.

Scopes: ``models`` and ``routes`` are fnmatch patterns (``claude-*``, ``router/auto``; ``/v1/messages*``);
empty means any. ``scopes`` say which kinds of endpoint a key may call (``SCOPES``; ``scope_for_route``):
``models`` (the model APIs, ``/v1/route``, ``count_tokens``, ``/v1/models``), ``feedback`` (it trains the
router), ``analytics`` (``/v1/analytics/*`` and ``/dashboard``), ``metrics`` (``/metrics`` and the detail
of ``/health``), or ``*`` for all. A key without ``scopes`` (older stores, config keys) has ``models`` only.
``verify`` answers 401 (unknown or revoked) or 403 (out of scope) with a message.

The gateway checks the store's mtime at most every ``reload_interval_s``, so ``weave-router keys revoke``
takes effect in a running gateway without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.reliability.limits import atomic_write_json
from streams.reliability.settings import KeyStoreSettings, LimitSettings, VirtualKeySettings

log = logging.getLogger(__name__)

KEY_PREFIX = "wr-"
STORE_VERSION = 1
SCOPES = ("models", "feedback", "analytics", "metrics")
ALL_SCOPES = "*"
DEFAULT_SCOPES = ("models",)
_SALT_CHECK = b"weave-router key salt check"


class KeyStoreError(Exception):
    """A store operation that cannot be done (unknown key, config key, unreadable store)."""


def scope_for_route(path: str) -> str:
    """The scope an endpoint needs: what it learns from, spends or reveals."""
    if path == "/v1/feedback":
        return "feedback"
    if path == "/v1/analytics" or path.startswith(("/v1/analytics/", "/dashboard")):
        return "analytics"
    if path in ("/metrics", "/health"):
        return "metrics"
    return "models"


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """Validated scope names (``KeyStoreError`` naming the unknown one); empty means the default."""
    out: list[str] = []
    for s in scopes:
        s = s.strip()
        if s not in (*SCOPES, ALL_SCOPES):
            raise KeyStoreError(f"unknown scope {s!r}: use {', '.join(SCOPES)} or {ALL_SCOPES}")
        if s not in out:
            out.append(s)
    return out or list(DEFAULT_SCOPES)


@dataclass(slots=True)
class VirtualKey:
    id: str  # safe to log, trace and show: "vk_…" for stored keys, "cfg:<name>" for config keys
    name: str
    hint: str  # last 4 characters of the key, to tell keys apart in a list
    created_at: float
    models: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    limits: LimitSettings = field(default_factory=LimitSettings)
    team: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    revoked_at: float | None = None
    source: str = "store"  # store | config
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows_scope(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes

    def allows_model(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)

    def allows_route(self, route: str) -> bool:
        return not self.routes or any(fnmatch.fnmatchcase(route, p) for p in self.routes)

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "hint": f"{KEY_PREFIX}…{self.hint}" if self.hint else "",
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
            "models": self.models,
            "routes": self.routes,
            "scopes": self.scopes,
            "limits": self.limits.model_dump(exclude_none=True, exclude={"burst_s"}),
            "team": self.team,
            "tags": self.tags,
            "source": self.source,
        }


@dataclass(slots=True)
class KeyCheck:
    """Answer of ``verify``: ``ok`` with the key, or the status (401/403) and message to answer with."""

    ok: bool
    key: VirtualKey | None = None
    status: int = 200
    error_type: str = ""
    message: str = ""
    param: str | None = None

    def error_type_for(self, dialect: str) -> str | None:
        """The error type to name in the answer: Anthropic's shape carries one (``permission_error``…);
        the OpenAI-style shapes derive theirs from the status."""
        return self.error_type if dialect == "anthropic_messages" else None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_salt(data_dir: str | os.PathLike[str], salt_env: str, env: Mapping[str, str] | None = None) -> bytes:
    """The deployment's hashing secret: from ``salt_env``, else ``<data_dir>/keys.salt`` (created once)."""
    env = os.environ if env is None else env
    if env.get(salt_env):
        return env[salt_env].encode()
    path = Path(data_dir) / "keys.salt"
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its salt
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
    return salt


class KeyStore:
    """File-backed store of hashed keys plus the config's keys; ``verify`` is in-memory and O(1)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        salt: bytes,
        *,
        config_keys: Iterable[VirtualKeySettings] = (),
        env: Mapping[str, str] | None = None,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not salt:
            raise ValueError("key salt must not be empty")
        self.path = Path(path)
        self._salt = salt
        self._env = os.environ if env is None else env
        self.reload_interval_s = reload_interval_s
        self.clock = clock
        self._by_hmac: dict[str, VirtualKey] = {}
        self._by_sha256: dict[str, VirtualKey] = {}
        self._config: list[tuple[str, str, VirtualKey]] = []  # (kind, digest, key)
        self._mtime: int | None = None
        self._checked = -1e18
        self._load_config(config_keys)
        self._reload(force=True)

    @classmethod
    def from_settings(cls, settings: Any, *, env: Mapping[str, str] | None = None) -> KeyStore:
        """From ``Settings`` (``data_dir``, ``virtual_keys``, ``reliability.keys`` when wired)."""
        rel = getattr(settings, "reliability", None)
        ks: KeyStoreSettings = getattr(rel, "keys", None) or KeyStoreSettings()
        data_dir = Path(settings.data_dir)
        path = Path(ks.store_file)
        if not path.is_absolute():
            path = data_dir / path
        raw_keys = getattr(settings, "virtual_keys", []) or []
        config_keys = [k if isinstance(k, VirtualKeySettings) else VirtualKeySettings.model_validate(k) for k in raw_keys]
        salt = load_salt(data_dir, ks.salt_env, env)
        return cls(path, salt, config_keys=config_keys, env=env, reload_interval_s=ks.reload_interval_s)

    # --- hashing -----------------------------------------------------------------------------------------

    def digest(self, plain: str) -> str:
        return hmac.new(self._salt, plain.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def _salt_check(self) -> str:
        return hmac.new(self._salt, _SALT_CHECK, hashlib.sha256).hexdigest()[:16]

    # --- loading -----------------------------------------------------------------------------------------

    def _load_config(self, config_keys: Iterable[VirtualKeySettings]) -> None:
        for c in config_keys:
            key = VirtualKey(
                id=f"cfg:{c.name}", name=c.name, hint="", created_at=0.0, models=list(c.models),
                routes=list(c.routes), limits=c.limits(), team=c.team, tags=dict(c.tags),
                revoked_at=0.0 if c.disabled else None, source="config", scopes=list(c.scopes),
            )
            if c.key_sha256:
                self._config.append(("sha256", c.key_sha256, key))
            elif c.key_env:
                plain = self._env.get(c.key_env)
                if not plain:
                    log.warning("virtual key %r: env var %s is not set; the key is disabled", c.name, c.key_env)
                    continue
                key.hint = plain[-4:]
                self._config.append(("hmac", self.digest(plain), key))

    def _reload(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._checked < self.reload_interval_s:
            return
        self._checked = now
        try:
            mtime: int | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if not force and mtime == self._mtime:
            return
        self._mtime = mtime
        doc = self._read() if mtime is not None else {"keys": []}
        by_hmac: dict[str, VirtualKey] = {}
        by_sha: dict[str, VirtualKey] = {}
        for kind, digest, key in self._config:
            (by_sha if kind == "sha256" else by_hmac)[digest] = key
        for rec in doc.get("keys", []):
            by_hmac[rec["hash"]] = _from_record(rec)
        self._by_hmac, self._by_sha256 = by_hmac, by_sha

    def _read(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read key store {self.path}: {exc}") from exc
        check = doc.get("salt_check")
        if check and check != self._salt_check():
            log.error("key store %s was written with another salt: its keys will not verify", self.path)
        return doc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock, so two CLI runs cannot lose each other's edits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = self._read() if self.path.is_file() else {"keys": []}
                yield doc
                doc["version"] = STORE_VERSION
                doc["algo"] = "hmac-sha256"
                doc["salt_check"] = self._salt_check()
                atomic_write_json(self.path, doc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._reload(force=True)

    # --- operations ----------------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        models: Iterable[str] = (),
        routes: Iterable[str] = (),
        limits: LimitSettings | None = None,
        team: str | None = None,
        tags: Mapping[str, str] | None = None,
        scopes: Iterable[str] = (),
    ) -> tuple[str, VirtualKey]:
        """A new key: returns ``(plain_key, record)``. The plain key is not kept anywhere; show it once."""
        if not name.strip():
            raise KeyStoreError("a key needs a name")
        plain = generate_key()
        key = VirtualKey(
            id="vk_" + secrets.token_hex(6), name=name.strip(), hint=plain[-4:], created_at=time.time(),
            models=[m for m in models if m], routes=[r for r in routes if r], limits=limits or LimitSettings(),
            team=team, tags=dict(tags or {}), scopes=check_scopes(scopes),
        )
        with self._locked() as doc:
            doc["keys"].append(_to_record(key, self.digest(plain)))
        return plain, key

    def list(self, *, include_revoked: bool = True) -> list[VirtualKey]:
        self._reload(force=True)
        keys = [k for _, _, k in self._config] + list(self._by_hmac_store())
        return [k for k in keys if include_revoked or k.active]

    def _by_hmac_store(self) -> Iterator[VirtualKey]:
        return (k for k in self._by_hmac.values() if k.source == "store")

    def revoke(self, ident: str) -> VirtualKey:
        """Revoke a stored key by id or by name (a name must be unambiguous among active keys)."""
        if any(k.id == ident or k.name == ident for _, _, k in self._config):
            raise KeyStoreError(f"{ident!r} is declared in the config file: remove it there or set disabled: true")
        found: dict[str, Any] | None = None
        with self._locked() as doc:
            recs = doc["keys"]
            match = [r for r in recs if r["id"] == ident]
            if not match:
                match = [r for r in recs if r["name"] == ident and r.get("revoked_at") is None]
            if not match:
                raise KeyStoreError(f"no active key with id or name {ident!r}")
            if len(match) > 1:
                ids = ", ".join(r["id"] for r in match)
                raise KeyStoreError(f"several keys are named {ident!r} ({ids}): revoke by id")
            found = match[0]
            if found.get("revoked_at") is None:
                found["revoked_at"] = time.time()
        return _from_record(found)

    def lookup(self, plain: str) -> VirtualKey | None:
        """The key record for a presented key (revoked ones included), or None."""
        self._reload()
        key = self._by_hmac.get(self.digest(plain))
        if key is None and self._by_sha256:
            key = self._by_sha256.get(hashlib.sha256(plain.encode("utf-8", "surrogatepass")).hexdigest())
        return key

    def verify(self, plain: str | None, *, model: str | None = None, route: str | None = None) -> KeyCheck:
        """Is this key valid, active, and allowed this model and route? Never echoes the key."""
        if not plain:
            return KeyCheck(False, None, 401, "authentication_error", "missing API key (x-api-key or Authorization: Bearer)")
        key = self.lookup(plain)
        if key is None:
            return KeyCheck(False, None, 401, "authentication_error", "invalid API key")
        if not key.active:
            return KeyCheck(False, key, 401, "authentication_error", f"API key {key.id} has been revoked")
        if model is not None and not key.allows_model(model):
            return KeyCheck(
                False, key, 403, "permission_error", f"API key {key.id} may not use model '{model}'", "model"
            )
        if route is not None:
            scope = scope_for_route(route)
            if not key.allows_scope(scope):
                return KeyCheck(False, key, 403, "permission_error",
                                f"API key {key.id} lacks the '{scope}' scope needed for {route}")
            if not key.allows_route(route):
                return KeyCheck(False, key, 403, "permission_error", f"API key {key.id} may not use {route}")
        return KeyCheck(True, key)


def _to_record(key: VirtualKey, digest: str) -> dict[str, Any]:
    return {
        "id": key.id, "name": key.name, "hash": digest, "hint": key.hint, "created_at": key.created_at,
        "revoked_at": key.revoked_at, "models": key.models, "routes": key.routes,
        "limits": key.limits.model_dump(exclude_none=True), "team": key.team, "tags": key.tags,
        "scopes": key.scopes,
    }


def _from_record(rec: Mapping[str, Any]) -> VirtualKey:
    return VirtualKey(
        id=rec["id"], name=rec["name"], hint=rec.get("hint", ""), created_at=float(rec.get("created_at", 0.0)),
        models=list(rec.get("models", [])), routes=list(rec.get("routes", [])),
        limits=LimitSettings.model_validate(rec.get("limits", {})), team=rec.get("team"),
        tags=dict(rec.get("tags", {})), revoked_at=rec.get("revoked_at"), source="store",
        scopes=list(rec.get("scopes") or DEFAULT_SCOPES),
    )


# --- `weave-router keys create|list|revoke` ------------------------------------------------------------------
# Each returns the text to print; a ``KeyStoreError`` means: print its message, exit 1.


def keys_cli_create(
    settings: Any,
    name: str,
    *,
    models: Iterable[str] = (),
    routes: Iterable[str] = (),
    requests_per_min: float | None = None,
    tokens_per_min: float | None = None,
    usd_per_day: float | None = None,
    usd_per_month: float | None = None,
    team: str | None = None,
    scopes: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    store = KeyStore.from_settings(settings, env=env)
    limits = LimitSettings(
        requests_per_min=requests_per_min, tokens_per_min=tokens_per_min,
        usd_per_day=usd_per_day, usd_per_month=usd_per_month,
    )
    plain, key = store.create(name, models=models, routes=routes, limits=limits, team=team, scopes=scopes)
    scope = ", ".join(key.models) if key.models else "any model"
    return (
        f"created key {key.id} ({key.name}; {scope}; scopes: {', '.join(key.scopes)})\n\n    {plain}\n\n"
        "This is the only time the key is shown: it is stored hashed. Use it as the client's API key\n"
        "(ANTHROPIC_API_KEY / OPENAI_API_KEY) when it talks to the router."
    )


def keys_cli_list(settings: Any, *, include_revoked: bool = False, as_json: bool = False,
                  env: Mapping[str, str] | None = None) -> str:
    store = KeyStore.from_settings(settings, env=env)
    keys = [k.public() for k in store.list(include_revoked=include_revoked)]
    if as_json:
        return json.dumps(keys, indent=2)
    if not keys:
        return "no keys (create one with: weave-router keys create NAME)"
    rows = [("ID", "NAME", "KEY", "MODELS", "SCOPES", "LIMITS", "STATUS")]
    for k in keys:
        limits = ", ".join(f"{n}={v:g}" for n, v in k["limits"].items()) or "-"
        status = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        rows.append((k["id"], k["name"], k["hint"] or "-", ",".join(k["models"]) or "*", ",".join(k["scopes"]),
                     limits, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def keys_cli_revoke(settings: Any, ident: str, *, env: Mapping[str, str] | None = None) -> str:
    store = KeyStore.from_settings(settings, env=env)
    key = store.revoke(ident)
    return f"revoked key {key.id} ({key.name})"
