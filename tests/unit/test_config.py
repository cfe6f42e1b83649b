from pathlib import Path

import pytest

from streams.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "weave-router.yaml"
    p.write_text(text)
    return p


def test_embedded_default_needs_no_configuration() -> None:
    s = load_settings(None, env={})
    assert s.server.host == "127.0.0.1" and s.server.port == 8787
    assert s.embedded_kafka
    assert s.clickhouse_url.startswith("chdb://")
    assert {p.base_url for p in s.providers} == {"sim"}
    assert {p.dialect for p in s.providers} == {"openai_chat", "openai_responses", "anthropic_messages", "gemini"}
    prices = sorted(m.price_out for m in s.models)
    assert len(prices) >= 3 and prices[0] < prices[-1], "the default must offer a choice of prices"
    assert s.frontier_default() == "claude-opus-sim"


def test_env_overrides_win_over_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, "server: {port: 9000}\n")
    s = load_settings(cfg, env={
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9092", "CLICKHOUSE_URL": "http://ch:8123",
        "WEAVE_DATA_DIR": str(tmp_path), "WEAVE_PORT": "9100",
    })
    assert s.kafka.bootstrap_servers == "k1:9092" and not s.embedded_kafka
    assert s.clickhouse_url == "http://ch:8123"
    assert s.data_dir == str(tmp_path)
    assert s.server.port == 9100


def test_weave_config_env_selects_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, "server: {port: 9001}\n")
    assert load_settings(None, env={"WEAVE_CONFIG": str(cfg)}).server.port == 9001


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("server: {port: 'many'}\n", "server.port"),
        ("serverz: {}\n", "serverz"),
        ("providers: [{name: p, dialect: klingon, base_url: sim}]\n", "providers.0.dialect"),
        ("providers: [{name: p, dialect: openai_chat, base_url: sim}]\n"
         "models: [{name: m, provider: nope}]\n", "models[0].provider"),
        ("providers: [{name: p, dialect: openai_chat, base_url: sim}]\n"
         "models: [{name: m, provider: p, price_in: -1}]\n", "models.0.price_in"),
        ("routing: {default_model: ghost}\n", "routing.default_model"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), env={})
    assert field in str(err.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "server: [\n"), env={})


def test_cost_uses_cached_price() -> None:
    s = load_settings(None, env={})
    m = s.model("claude-opus-sim")
    assert m is not None
    # 1M input of which 400k cached, 100k output: 0.6*5 + 0.4*0.5 + 0.1*25
    assert m.cost_usd(1_000_000, 100_000, 400_000) == pytest.approx(3.0 + 0.2 + 2.5)


def test_upstream_key_comes_from_env_or_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "key"
    secret.write_text("sk-file\n")
    cfg = write(tmp_path, f"providers:\n  - {{name: a, dialect: openai_chat, base_url: http://x, api_key_env: MY_KEY}}\n"
                          f"  - {{name: b, dialect: openai_chat, base_url: http://x, api_key_file: {secret}}}\n")
    monkeypatch.setenv("MY_KEY", "sk-env")
    s = load_settings(cfg, env={})
    assert s.provider("a").api_key() == "sk-env"  # type: ignore[union-attr]
    assert s.provider("b").api_key() == "sk-file"  # type: ignore[union-attr]
    assert "sk-env" not in s.model_dump_json()
