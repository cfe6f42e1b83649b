"""Settings: one YAML file (``WEAVE_CONFIG`` or ``--config``) plus environment overrides.

Invalid configuration fails at start with a message that names the offending field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.reliability.settings import ReliabilitySettings, VirtualKeySettings
from streams.routing.settings import RoutingSettings

ProviderDialect = Literal["openai_chat", "openai_responses", "anthropic_messages", "gemini"]
Tier = Literal["frontier", "strong", "standard", "cheap"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


class ConfigError(Exception):
    """Configuration that cannot start the service; the message names the field."""


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tools: bool = True
    vision: bool = False
    thinking: bool = False


class ProviderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dialect: ProviderDialect
    base_url: str = Field(description="e.g. https://api.openai.com/v1; 'sim' means the built-in simulator")
    api_key_env: str | None = Field(None, description="name of the env var holding the upstream key")
    api_key_file: str | None = Field(None, description="path of a secrets file holding the upstream key")
    weight: float = 1.0
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 120.0
    idle_timeout_s: float = 120.0
    headers: dict[str, str] = Field(default_factory=dict)
    prompt_cache_key: bool | None = Field(
        None,
        description="send OpenAI's prompt_cache_key on translated requests; unset: to OpenAI Responses "
        "providers, api.openai.com, Azure OpenAI and the simulator (strict OpenAI-compatible servers refuse it)",
    )

    def takes_prompt_cache_key(self) -> bool:
        if self.prompt_cache_key is not None:
            return self.prompt_cache_key
        if self.dialect == "openai_responses" or self.base_url == "sim":
            return True
        host = urlsplit(self.base_url).hostname or ""
        return host == "api.openai.com" or host.endswith(".openai.azure.com")

    def api_key(self) -> str | None:
        """The upstream key, read from env or the secrets file at call time (never stored in config)."""
        if self.api_key_env and os.environ.get(self.api_key_env):
            return os.environ[self.api_key_env]
        if self.api_key_file and Path(self.api_key_file).is_file():
            return Path(self.api_key_file).read_text().strip()
        return None


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    provider: str | list[str] = Field(description="provider name, or several for multi-homing")
    upstream_model: str | None = None
    price_in: float = Field(0.0, ge=0, description="USD per million input tokens")
    price_out: float = Field(0.0, ge=0, description="USD per million output tokens")
    price_cached: float = Field(0.0, ge=0, description="USD per million cached input tokens")
    context_window: int = Field(128_000, gt=0)
    tier: Tier = "standard"
    capabilities: Capabilities = Field(default_factory=Capabilities)
    skill: float | None = Field(None, ge=0, le=1, description="simulated provider only: success probability")

    @property
    def upstream(self) -> str:
        return self.upstream_model or self.name

    @property
    def providers(self) -> list[str]:
        return [self.provider] if isinstance(self.provider, str) else list(self.provider)

    def cost_usd(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        uncached = max(0, input_tokens - cached_tokens)
        return (uncached * self.price_in + cached_tokens * self.price_cached + output_tokens * self.price_out) / 1e6


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_concurrency: int = Field(512, gt=0)
    read_timeout_s: float = 30.0
    log_content: bool = False


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str | None = Field(None, description="unset: start the embedded broker")
    partitions: int = Field(4, gt=0)
    replication_factor: int = Field(1, gt=0)
    buffer_size: int = Field(100_000, gt=0, description="events held in memory before spilling to disk")
    agent_engine: Literal["faust", "batch"] = Field(
        "faust",
        description=(
            "how the router and learner agents consume: 'faust' (Faust agents, the reference design) or "
            "'batch' (a plain consumer-group loop over whole fetches, ~3x the throughput; same topics, "
            "same at-least-once commits). Do not mix engines in one consumer group."
        ),
    )
    embedded_max_rss_mb: float = Field(
        256.0, ge=0,
        description=(
            "the embedded broker keeps every record in memory: past this resident size it is started afresh "
            "once every consumer group has read everything (0: never)"
        ),
    )
    embedded_check_interval_s: float = Field(10.0, gt=0, description="how often the embedded broker's size is read")


class ClickHouseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="http(s)://… for a server, chdb:///dir for the embedded engine")
    database: str = "weave"
    batch_size: int = Field(5000, gt=0)
    # An insert costs ~18 ms of CPU whatever its size (chDB, measured: 250 rows 86 µs/row, 4,000 rows
    # 13 µs/row), so the sink waits up to 2 s for company; analytics see rows that much later.
    flush_interval_s: float = Field(2.0, gt=0)
    # The embedded engine only (storage.clickhouse.EngineLimits): chDB's defaults would let it take 90%
    # of the machine's RAM and each cache half of it.
    embedded_max_memory_mb: int = Field(1024, ge=0, description="chDB's memory ceiling (0: chDB's default)")
    embedded_cache_mb: int = Field(64, ge=0, description="each of chDB's mark and index caches (0: chDB's default)")


class SimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = DEFAULT_HOST
    port: int = 0
    ttft_ms: float = 5.0
    tokens_per_s: float = 2000.0


class ResponsesSettings(BaseModel):
    """The store behind chained Responses (``previous_response_id``) and ``GET /v1/responses/{id}``:
    ``<data_dir>/responses.sqlite3``."""

    model_config = ConfigDict(extra="forbid")

    store: bool = Field(True, description="keep each response's conversation; false: keep nothing "
                                          "(a previous_response_id is then always unknown)")
    ttl_s: float = Field(30 * 24 * 3600.0, gt=0, description="a response is forgotten this long after it was made")
    max_entries: int = Field(10_000, gt=0, description="beyond this many responses the oldest go first")
    max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="beyond this much JSON the oldest go first")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    data_dir: str = Field(default_factory=lambda: str(Path.home() / ".weave-router"))
    providers: list[ProviderSettings] = Field(default_factory=list)
    models: list[ModelSettings] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    reliability: ReliabilitySettings = Field(default_factory=ReliabilitySettings)
    virtual_keys: list[VirtualKeySettings] = Field(default_factory=list)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        provider_names = {p.name for p in self.providers}
        model_names = {m.name for m in self.models}
        for i, m in enumerate(self.models):
            for p in m.providers:
                if p not in provider_names:
                    raise ValueError(f"models[{i}].provider: unknown provider {p!r}")
        if self.routing.default_model and self.routing.default_model not in model_names:
            raise ValueError(f"routing.default_model: unknown model {self.routing.default_model!r}")
        for i, r in enumerate(self.routing.routes):
            for name in r.models:
                if name not in model_names:
                    raise ValueError(f"routing.routes[{i}].models: unknown model {name!r}")
        return self

    def model(self, name: str) -> ModelSettings | None:
        return next((m for m in self.models if m.name == name), None)

    def provider(self, name: str) -> ProviderSettings | None:
        return next((p for p in self.providers if p.name == name), None)

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka.bootstrap_servers

    @property
    def clickhouse_url(self) -> str:
        return self.clickhouse.url or f"chdb://{Path(self.data_dir).resolve() / 'clickhouse'}"

    def frontier_default(self) -> str | None:
        if self.routing.default_model:
            return self.routing.default_model
        frontier = [m for m in self.models if m.tier == "frontier"]
        pool = frontier or self.models
        return max(pool, key=lambda m: m.price_out).name if pool else None


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "CLICKHOUSE_URL": ("clickhouse", "url"),
    "WEAVE_DATA_DIR": ("data_dir",),
    "WEAVE_HOST": ("server", "host"),
    "WEAVE_PORT": ("server", "port"),
}


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    for var, path in ENV_OVERRIDES.items():
        value = env.get(var)
        if not value:
            continue
        node = raw
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return raw


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        lines.append(f"{where}: {e['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping, or a ``ConfigError`` naming ``what`` it is."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path}: top level must be a mapping")
    return raw


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the YAML config (``path``, else ``WEAVE_CONFIG``, else the built-in default) plus env overrides."""
    env = dict(os.environ) if env is None else env
    path = path or env.get("WEAVE_CONFIG")
    raw = read_yaml_mapping(Path(path), "config file") if path else default_config()
    raw = _apply_env(raw, env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


def default_config() -> dict[str, Any]:
    """The embedded default: simulated providers for the four dialects and models of different price/skill."""
    path = Path(__file__).with_name("default_config.yaml")
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data
