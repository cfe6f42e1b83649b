"""Bring up the whole service in one process: broker (embedded or external), ClickHouse, simulator,
Faust workers and the HTTP gateway; tear it down in reverse order.

The embedded default needs no configuration: Tansu as a child process, chDB under the data dir, the
simulated provider for every provider whose base_url is ``sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.infra.broker import EmbeddedBroker
from streams.infra.topics import ensure_topics
from streams.storage.clickhouse import connect_configured, is_embedded, redact_url
from streams.storage.migrations import migrate

log = logging.getLogger("weave.stack")


@dataclass
class ComponentState:
    name: str
    ok: bool = False
    detail: str = ""


@dataclass
class StackState:
    """What is running and where; read by /health and printed at start."""

    started_at: float = field(default_factory=time.time)
    components: dict[str, ComponentState] = field(default_factory=dict)

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        self.components[name] = ComponentState(name, ok, detail)

    def health(self) -> dict[str, Any]:
        comps = {c.name: {"ok": c.ok, "detail": c.detail} for c in self.components.values()}
        return {
            "status": "ok" if all(c.ok for c in self.components.values()) else "degraded",
            "uptime_s": round(time.time() - self.started_at, 1),
            "components": comps,
        }


class Stack:
    """Owns the long-lived resources of one service process."""

    def __init__(self, settings: Settings, *, with_gateway: bool = True, with_workers: bool = True) -> None:
        self.settings = settings
        self.with_gateway = with_gateway
        self.with_workers = with_workers
        self.state = StackState()
        self.broker: EmbeddedBroker | None = None
        self.bootstrap_servers: str = settings.kafka.bootstrap_servers or ""
        self.clickhouse: Any = None
        self.sim_url: str | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._exit = contextlib.AsyncExitStack()

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    async def start_broker(self) -> None:
        if self.settings.embedded_kafka:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.broker = EmbeddedBroker(log_path=self.data_dir / "tansu.log")
            # Started from the loop's own thread on purpose: PR_SET_PDEATHSIG fires when the *thread*
            # that forked exits, so an executor thread would take the broker down with it.
            self.broker.start()
            self.bootstrap_servers = self.broker.bootstrap_servers
            self._closers.append(self._stop_broker)
            detail = f"embedded Tansu at {self.bootstrap_servers} (pid {self.broker.process.pid})"  # type: ignore[union-attr]
        else:
            detail = f"external Kafka at {self.bootstrap_servers}"
        created = await ensure_topics(self.bootstrap_servers, self.settings.kafka.partitions,
                                      self.settings.kafka.replication_factor)
        if created:
            detail += f"; created topics {', '.join(created)}"
        self.state.set("broker", True, detail)

    async def _stop_broker(self) -> None:
        if self.broker:
            await asyncio.to_thread(self.broker.stop)
            self.state.set("broker", False, "stopped")

    async def start_clickhouse(self) -> None:
        url = self.settings.clickhouse_url
        self.clickhouse = await asyncio.to_thread(connect_configured, self.settings)
        applied = await asyncio.to_thread(migrate, self.clickhouse)
        kind = "embedded chDB" if is_embedded(url) else "ClickHouse server"
        detail = f"{kind} at {redact_url(url)}"
        if applied:
            detail += f"; applied migrations {', '.join(applied)}"
        self.state.set("clickhouse", True, detail)

    def needs_sim(self) -> bool:
        return any(p.base_url == "sim" for p in self.settings.providers)

    async def start_sim(self) -> None:
        """The simulated provider, for every provider whose base_url is ``sim`` (the embedded default)."""
        from streams.providers.sim import SimConfig, running_sim

        config = SimConfig.from_settings(self.settings)
        self.sim_url = await self._exit.enter_async_context(
            running_sim(config, self.settings.sim.host, self.settings.sim.port)
        )
        self.state.set("simulator", True, f"simulated provider at {self.sim_url} "
                                           f"({len(config.models)} models with skill levels)")

    def broker_alive(self) -> bool:
        return self.broker.alive() if self.broker else bool(self.bootstrap_servers)

    def health(self) -> dict[str, Any]:
        if self.broker is not None and not self.broker.alive():
            self.state.set("broker", False, "embedded broker exited")
        return self.state.health()

    def components(self) -> dict[str, dict[str, Any]]:
        """Component states for the gateway's /health: {name: {"ok": bool, "detail": str}}."""
        return self.health()["components"]

    async def start(self) -> None:
        await self.start_broker()
        await self.start_clickhouse()
        if self.needs_sim():
            await self.start_sim()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._exit.aclose()
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):
                await closer()
        if self.clickhouse is not None:
            with contextlib.suppress(Exception):
                self.clickhouse.close()
