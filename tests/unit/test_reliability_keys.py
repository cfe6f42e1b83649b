"""Virtual keys: hashed at rest, scoped, revocable; the CLI functions."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.reliability.keys import (
    KeyStore,
    KeyStoreError,
    keys_cli_create,
    keys_cli_list,
    keys_cli_revoke,
    load_salt,
    scope_for_route,
)
from streams.reliability.settings import LimitSettings, VirtualKeySettings


def store(tmp_path: Path, **kw: object) -> KeyStore:
    return KeyStore(tmp_path / "keys.json", b"test-salt", reload_interval_s=0, **kw)  # type: ignore[arg-type]


def test_create_stores_only_a_hash(tmp_path: Path) -> None:
    s = store(tmp_path)
    plain, key = s.create("ci", models=["claude-*"], limits=LimitSettings(requests_per_min=60))
    assert plain.startswith("wr-") and len(plain) > 40
    raw = (tmp_path / "keys.json").read_text()
    assert plain not in raw
    assert plain[3:] not in raw  # not even without the prefix
    assert hashlib.sha256(plain.encode()).hexdigest() not in raw  # nor an unsalted hash
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    rec = json.loads(raw)["keys"][0]
    assert rec["id"] == key.id and rec["limits"] == {"requests_per_min": 60.0, "burst_s": 60.0}
    check = s.verify(plain, model="claude-sonnet-4")
    assert check.ok and check.key is not None and check.key.id == key.id
    assert check.key.limits.requests_per_min == 60


def test_unknown_and_missing_keys_are_401(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.create("a")
    bad = s.verify("wr-not-a-real-key")
    assert not bad.ok and bad.status == 401 and bad.message == "invalid API key"
    missing = s.verify(None)
    assert missing.status == 401 and "missing API key" in missing.message


def test_scope_enforcement(tmp_path: Path) -> None:
    s = store(tmp_path)
    plain, key = s.create("scoped", models=["claude-*", "router/auto"], routes=["/v1/messages*"])
    assert s.verify(plain, model="claude-haiku", route="/v1/messages").ok
    assert s.verify(plain, model="router/auto").ok
    denied = s.verify(plain, model="gpt-5")
    assert not denied.ok and denied.status == 403 and denied.param == "model"
    assert f"API key {key.id} may not use model 'gpt-5'" == denied.message
    route = s.verify(plain, model="claude-haiku", route="/v1/chat/completions")
    assert route.status == 403 and "/v1/chat/completions" in route.message


def test_revoke_by_id_and_name(tmp_path: Path) -> None:
    s = store(tmp_path)
    p1, k1 = s.create("one")
    p2, _ = s.create("two")
    s.revoke(k1.id)
    r = s.verify(p1)
    assert not r.ok and r.status == 401 and "revoked" in r.message
    assert s.verify(p2).ok
    s.revoke("two")
    assert not s.verify(p2).ok
    with pytest.raises(KeyStoreError, match="no active key"):
        s.revoke("two")
    assert [k.name for k in s.list(include_revoked=False)] == []
    assert len(s.list()) == 2


def test_revocation_reaches_a_running_gateway_store(tmp_path: Path) -> None:
    gateway = store(tmp_path)
    cli = store(tmp_path)  # another process in real life: `weave-router keys revoke`
    plain, key = cli.create("x")
    assert gateway.verify(plain).ok  # reload on mtime change
    cli.revoke(key.id)
    os.utime(tmp_path / "keys.json", ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    assert not gateway.verify(plain).ok


def test_ambiguous_name_needs_an_id(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.create("dup")
    s.create("dup")
    with pytest.raises(KeyStoreError, match="revoke by id"):
        s.revoke("dup")


def test_another_salt_does_not_verify(tmp_path: Path) -> None:
    plain, _ = store(tmp_path).create("x")
    other = KeyStore(tmp_path / "keys.json", b"other-salt")
    assert not other.verify(plain).ok


def test_config_keys_by_env_and_sha256(tmp_path: Path) -> None:
    env = {"TEAM_KEY": "team-secret-key-123"}
    cfg = [
        VirtualKeySettings(name="team", key_env="TEAM_KEY", models=["cheap-*"], requests_per_min=10),
        VirtualKeySettings(name="ops", key_sha256=hashlib.sha256(b"ops-secret").hexdigest()),
        VirtualKeySettings(name="off", key_sha256=hashlib.sha256(b"off-secret").hexdigest(), disabled=True),
    ]
    s = store(tmp_path, config_keys=cfg, env=env)
    team = s.verify("team-secret-key-123", model="cheap-1")
    assert team.ok and team.key is not None and team.key.id == "cfg:team" and team.key.limits.requests_per_min == 10
    assert s.verify("team-secret-key-123", model="frontier").status == 403
    assert s.verify("ops-secret").ok
    assert s.verify("off-secret").status == 401
    with pytest.raises(KeyStoreError, match="config file"):
        s.revoke("team")


def test_virtual_key_settings_need_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        VirtualKeySettings(name="x")
    with pytest.raises(ValueError, match="64 hex"):
        VirtualKeySettings(name="x", key_sha256="abc")


def test_salt_file_is_created_once(tmp_path: Path) -> None:
    a = load_salt(tmp_path, "NOPE", env={})
    assert load_salt(tmp_path, "NOPE", env={}) == a
    assert stat.S_IMODE(os.stat(tmp_path / "keys.salt").st_mode) == 0o600
    assert load_salt(tmp_path, "SALT", env={"SALT": "from-env"}) == b"from-env"


def test_cli_functions(tmp_path: Path) -> None:
    settings = SimpleNamespace(data_dir=str(tmp_path), virtual_keys=[])
    env: dict[str, str] = {}
    out = keys_cli_create(settings, "laptop", models=["claude-*"], requests_per_min=30, usd_per_day=5, env=env)
    plain = next(line.strip() for line in out.splitlines() if line.strip().startswith("wr-"))
    assert "only time the key is shown" in out
    listing = keys_cli_list(settings, env=env)
    assert "laptop" in listing and "claude-*" in listing and "requests_per_min=30" in listing
    assert plain not in listing and plain not in (tmp_path / "keys.json").read_text()
    key_id = json.loads(keys_cli_list(settings, as_json=True, env=env))[0]["id"]
    assert keys_cli_revoke(settings, key_id, env=env) == f"revoked key {key_id} (laptop)"
    assert "no keys" in keys_cli_list(settings, env=env)
    assert "revoked" in keys_cli_list(settings, include_revoked=True, env=env)
    s = KeyStore.from_settings(settings, env=env)
    assert s.verify(plain).status == 401


def test_endpoints_need_their_scope(tmp_path: Path) -> None:
    s = store(tmp_path)
    models, _ = s.create("agent")  # the default: the model APIs only
    ci, _ = s.create("ci", scopes=["models", "feedback"])
    ops, _ = s.create("ops", scopes=["analytics", "metrics"])
    admin, _ = s.create("admin", scopes=["*"])
    assert s.verify(models, route="/v1/messages").ok and s.verify(models, route="/v1/route").ok
    for route in ("/v1/feedback", "/v1/analytics/summary", "/dashboard", "/metrics", "/health"):
        denied = s.verify(models, route=route)
        assert denied.status == 403 and f"'{scope_for_route(route)}' scope" in denied.message
    assert s.verify(ci, route="/v1/feedback").ok and s.verify(ci, route="/metrics").status == 403
    assert s.verify(ops, route="/dashboard/dashboard.js").ok and s.verify(ops, route="/metrics").ok
    assert s.verify(ops, route="/v1/chat/completions").status == 403
    assert all(s.verify(admin, route=r).ok for r in ("/v1/feedback", "/v1/analytics", "/metrics", "/v1/responses"))


def test_scope_names_are_checked_and_old_records_keep_the_model_scope(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(KeyStoreError, match="unknown scope 'learn'"):
        s.create("x", scopes=["learn"])
    plain, _ = s.create("old")
    doc = json.loads((tmp_path / "keys.json").read_text())
    del doc["keys"][0]["scopes"]  # a store written before scopes existed
    (tmp_path / "keys.json").write_text(json.dumps(doc))
    os.utime(tmp_path / "keys.json", ns=(2, 2))
    assert s.verify(plain, route="/v1/messages").ok and s.verify(plain, route="/v1/feedback").status == 403
    with pytest.raises(ValueError, match="unknown scope"):
        VirtualKeySettings(name="x", key_sha256="0" * 64, scopes=["everything"])
    cfg = VirtualKeySettings(name="grafana", key_sha256=hashlib.sha256(b"g").hexdigest(), scopes=["metrics"])
    s2 = store(tmp_path / "cfg", config_keys=[cfg])
    assert s2.verify("g", route="/metrics").ok and s2.verify("g", route="/v1/messages").status == 403


def test_cli_creates_scoped_keys(tmp_path: Path) -> None:
    settings = SimpleNamespace(data_dir=str(tmp_path), virtual_keys=[])
    out = keys_cli_create(settings, "ci", scopes=["models", "feedback"], env={})
    assert "scopes: models, feedback" in out
    assert "models,feedback" in keys_cli_list(settings, env={})
    assert json.loads(keys_cli_list(settings, as_json=True, env={}))[0]["scopes"] == ["models", "feedback"]


def test_keys_create_command_takes_scopes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from streams.cli import app

    env = {"WEAVE_DATA_DIR": str(tmp_path), "WEAVE_KEY_SALT": "s"}
    result = CliRunner().invoke(app, ["keys", "create", "ci", "--scope", "models", "--scope", "feedback"], env=env)
    assert result.exit_code == 0, result.output
    assert "scopes: models, feedback" in result.output
    bad = CliRunner().invoke(app, ["keys", "create", "x", "--scope", "root"], env=env)
    assert bad.exit_code == 1 and "unknown scope" in bad.output
