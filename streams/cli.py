"""``weave-router``: run the service (up, gateway, worker, sim), manage storage, evaluate and report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvloop
from rich.console import Console

from streams.config import ConfigError, Settings, load_settings
from streams.reliability.redact import Redactor, configure_logging

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


def _run(coro: Any, settings: Settings | None = None) -> None:
    # Secrets out of every log line: the configured upstream keys' values too, when settings are known.
    configure_logging(Redactor.from_settings(settings) if settings is not None else None)
    # Everything the service writes (journal, spill files, chDB data, the broker's log, keys) is for
    # its own user only: 0600 files, 0700 directories, whatever creates them (chDB and Tansu included).
    os.umask(0o077)
    with contextlib.suppress(KeyboardInterrupt):
        # uvloop: the gateway's event loop costs markedly less CPU per request than asyncio's.
        uvloop.run(coro)


@app.command()
def up(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run everything in one process: broker (embedded unless KAFKA_BOOTSTRAP_SERVERS), ClickHouse
    (chDB unless CLICKHOUSE_URL), the simulated provider when needed, Faust workers and the gateway."""
    from streams.infra.runtime import run_service

    settings = _settings(config, host, port)
    _run(run_service(settings, gateway=True, workers=True, wait=_wait_for_signal, console=console), settings)


@app.command()
def gateway(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the HTTP gateway only (production: workers run apart)."""
    from streams.infra.runtime import run_service

    settings = _settings(config, host, port)
    _run(run_service(settings, gateway=True, workers=False, wait=_wait_for_signal, console=console), settings)


@app.command()
def worker(config: ConfigOpt = None, host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the Faust workers only (router, learner, sink), with /health on the given port."""
    from streams.infra.runtime import run_service

    settings = _settings(config, host, port)
    _run(run_service(settings, gateway=False, workers=True, wait=_wait_for_signal, console=console), settings)


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Apply pending ClickHouse migrations (streams/storage/sql/NNNN_*.sql, shipped in the package)."""
    from streams.storage.clickhouse import connect_configured, redact_url
    from streams.storage.migrations import migrate as apply

    settings = _settings(config)
    client = connect_configured(settings)
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


@app.command()
def replay(
    dataset: Annotated[Path, typer.Option("--dataset", help="folder with outcomes.csv (+ tasks.jsonl, META.json)")],
    config: ConfigOpt = None,
    seeds: Annotated[int, typer.Option("--seeds")] = 5,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", help="attempts per task (cascade)")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write the JSON report here")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write PNG plots into this folder")] = None,
    through_kafka: Annotated[bool, typer.Option("--through-kafka", help="learn through the real topics and learner agent (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)")] = False,
    quality_target: Annotated[float | None, typer.Option("--quality-target", min=0.01, max=1.0, help="keep this share of the frontier default's success at the least cost (the curve sweeps the target)")] = None,
    label_noise: Annotated[float, typer.Option("--label-noise", min=0.0, max=0.5, help="share of observed outcomes flipped (noisy tests); scored on the truth")] = 0.0,
    ceilings: Annotated[bool, typer.Option("--ceilings", help="also run the same learner with every model's outcome, and the best fixed order in hindsight: how far any router could get")] = False,
) -> None:
    """Replay the learned policy online over an outcome matrix, with bandit feedback only."""
    from streams.evaluation.report import DEFAULT_MAX_ATTEMPTS
    from streams.evaluation.report import main as replay_main

    if not (dataset / "outcomes.csv").is_file():
        console.print(f"[red]error:[/red] {dataset} has no outcomes.csv")
        raise typer.Exit(2)
    replay_main(dataset, config, seeds, max_attempts or DEFAULT_MAX_ATTEMPTS, report, plot,
                console=Console(), through_kafka=through_kafka, quality_target=quality_target,
                label_noise=label_noise, ceilings=ceilings)


@app.command()
def report(
    config: ConfigOpt = None,
    since: Annotated[str, typer.Option("--since", help="window start: ISO time, epoch s, or a span like 24h")] = "24h",
    until: Annotated[str | None, typer.Option("--until")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable JSON")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="write PNG charts into this folder")] = None,
    url: Annotated[str | None, typer.Option("--url", help="a running service (default: the configured one)")] = None,
) -> None:
    """Cost, savings, success rate and overhead for a time window (from the running service or ClickHouse)."""
    from streams.analytics.report import main as report_main

    raise typer.Exit(report_main(_settings(config), since, until, as_json, plot, url))


@app.command()
def demo(
    config: ConfigOpt = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="gateway URL (default: the configured one)")] = None,
    sessions: Annotated[int, typer.Option("--sessions")] = 24,
    feedback: Annotated[bool, typer.Option("--feedback/--no-feedback", help="report test outcomes (--no-feedback: the out-of-box mix, nothing learned)")] = True,
    seed: Annotated[int | None, typer.Option("--seed", help="seed of the session mix")] = None,
) -> None:
    """Drive simulated coding-agent sessions (tool loops, test outcomes) through a running stack."""
    from streams.analytics.demo import run_demo
    from streams.analytics.report import service_url

    run_demo(base_url or service_url(_settings(config)), sessions=sessions, feedback=feedback, seed=seed)


@app.command()
def evaluate(
    candidate: Annotated[Path, typer.Option("--candidate", help="candidate weave-router.yaml or routing section")],
    config: ConfigOpt = None,
    since: Annotated[str, typer.Option("--since")] = "7d",
    file: Annotated[Path | None, typer.Option("--file", help="logged decisions JSONL")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="learned bandit snapshot for the candidate")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Off-policy estimate (IPS, SNIPS, DR with 95% CIs) of a candidate routing config on logged decisions."""
    from streams.evaluation.offline import main as evaluate_main

    raise typer.Exit(evaluate_main(_settings(config), candidate, since, file, as_json, policy=policy))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmark suite (gateway added latency, decision latency, agents, sink, RSS); see bench/."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "run_all.py").is_file():
        console.print("[red]error:[/red] bench/ is part of the source checkout; run from a clone")
        raise typer.Exit(2)
    sys.path.insert(0, str(root))
    from bench.run_all import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)) or 0)


keys_app = typer.Typer(help="Virtual API keys for clients (stored hashed, scoped, revocable).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: str,
    config: ConfigOpt = None,
    models: Annotated[list[str] | None, typer.Option("--model", help="allowed model pattern (repeat)")] = None,
    routes: Annotated[list[str] | None, typer.Option("--route", help="allowed route pattern (repeat)")] = None,
    requests_per_min: Annotated[float | None, typer.Option("--rpm")] = None,
    tokens_per_min: Annotated[float | None, typer.Option("--tpm")] = None,
    usd_per_day: Annotated[float | None, typer.Option("--usd-per-day")] = None,
    usd_per_month: Annotated[float | None, typer.Option("--usd-per-month")] = None,
    team: Annotated[str | None, typer.Option("--team")] = None,
    scopes: Annotated[list[str] | None, typer.Option(
        "--scope", help="what the key may call (repeat): models (default), feedback, analytics, metrics, or *")] = None,
) -> None:
    """Create a key; it is printed once and stored only as a salted hash."""
    from streams.reliability.keys import KeyStoreError, keys_cli_create

    try:
        print(keys_cli_create(_settings(config), name, models=models or [], routes=routes or [],
                              requests_per_min=requests_per_min, tokens_per_min=tokens_per_min,
                              usd_per_day=usd_per_day, usd_per_month=usd_per_month, team=team,
                              scopes=scopes or []))
    except KeyStoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@keys_app.command("list")
def keys_list(
    config: ConfigOpt = None,
    include_revoked: Annotated[bool, typer.Option("--all")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List keys (never the secret)."""
    from streams.reliability.keys import keys_cli_list

    print(keys_cli_list(_settings(config), include_revoked=include_revoked, as_json=as_json))


@keys_app.command("revoke")
def keys_revoke(ident: str, config: ConfigOpt = None) -> None:
    """Revoke a key by id or name."""
    from streams.reliability.keys import KeyStoreError, keys_cli_revoke

    try:
        print(keys_cli_revoke(_settings(config), ident))
    except KeyStoreError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # raised lazily by subcommands that load settings themselves
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
