"""``weave-router``: run the service (up, gateway, worker, sim), manage storage, evaluate and report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from streams.config import ConfigError, Settings, load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Weave Router: an LLM model router for coding agents.")
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="weave-router.yaml (default: $WEAVE_CONFIG or built-in)")]
HostOpt = Annotated[str | None, typer.Option("--host", help="listen address (default 127.0.0.1)")]
PortOpt = Annotated[int | None, typer.Option("--port", help="listen port (default 8787)")]


def _settings(config: Path | None, host: str | None = None, port: int | None = None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    return settings


async def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM; then the caller tears everything down in order."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run(coro: Any) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


@app.command()
def up(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run everything in one process: broker (embedded unless KAFKA_BOOTSTRAP_SERVERS), ClickHouse
    (chDB unless CLICKHOUSE_URL), the simulated provider when needed, Faust workers and the gateway."""
    from streams.infra.runtime import run_service

    _run(run_service(_settings(config, host, port), gateway=True, workers=True, wait=_wait_for_signal, console=console))


@app.command()
def gateway(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the HTTP gateway only (production: workers run apart)."""
    from streams.infra.runtime import run_service

    _run(run_service(_settings(config, host, port), gateway=True, workers=False, wait=_wait_for_signal, console=console))


@app.command()
def worker(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the Faust workers only (router, learner, sink), with /health on the given port."""
    from streams.infra.runtime import run_service

    _run(run_service(_settings(config, host, port), gateway=False, workers=True, wait=_wait_for_signal, console=console))


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Apply pending ClickHouse migrations (deploy/clickhouse/NNNN_*.sql)."""
    from streams.storage.clickhouse import connect, redact_url
    from streams.storage.migrations import migrate as apply

    settings = _settings(config)
    client = connect(settings.clickhouse_url, settings.clickhouse.database)
    applied = apply(client)
    target = redact_url(settings.clickhouse_url)
    console.print(f"applied {', '.join(applied)} on {target}" if applied else f"{target} is up to date")


@app.command()
def sim(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8790,
) -> None:
    """Run the simulated provider alone (OpenAI Chat, OpenAI Responses, Anthropic Messages on one port)."""
    from streams.providers.sim import SimConfig, serve_sim

    sim_config = SimConfig.from_settings(_settings(config))

    async def main() -> None:
        task = asyncio.create_task(
            serve_sim(sim_config, host, port, on_ready=lambda url: console.print(f"simulated provider on {url}"))
        )
        await _wait_for_signal()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    _run(main())


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # raised lazily by subcommands that load settings themselves
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
