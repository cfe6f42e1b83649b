"""Gateway added latency: the same open-loop load against the simulated provider directly and through
the gateway, in one run.

    .venv/bin/python bench/bench_gateway.py [--rates 500,1000] [--duration 5] [--warmup 2]

Three processes, as in production: the simulator (instant replies: 0 ms TTFT, unlimited token rate,
10-token answers) and the load generator share CPU 0; the gateway runs alone on CPU 1 (when the machine
has two). Requests are sent at fixed times t0 + i/rate whatever the responses do (open loop), and each
latency is measured from the scheduled send time, so queueing in a slow target is not hidden.

Reported per mode (plain, stream) and rate: p50/p99 of the direct call and through the gateway, the
difference ("added"), time to first byte for streams, errors, and the gateway's CPU time per request
(from /proc, user + system).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench-chat"
PROMPT = "Explain what a gateway does in one paragraph."


# --- child processes ---------------------------------------------------------------------------------


def _run_sim(port: int) -> None:
    import uvloop

    from streams.providers.sim.config import SimConfig
    from streams.providers.sim.server import serve_sim

    config = SimConfig(ttft_ms=0.0, tokens_per_s=0.0, reply_tokens=10, models={MODEL: 0.7})
    uvloop.run(serve_sim(config, port=port, log_level="warning", on_ready=lambda url: None))


def _run_gateway(port: int, sim_url: str) -> None:
    import uvloop

    from streams.config import Settings
    from streams.ingress.app import create_app, serve
    from streams.ingress.gateway import Gateway
    from streams.providers.client import UpstreamClient
    from streams.routing.router import Router

    settings = Settings.model_validate(
        {
            "providers": [{"name": "sim-chat", "dialect": "openai_chat", "base_url": "sim"}],
            "models": [{"name": MODEL, "provider": "sim-chat", "price_in": 0.25, "price_out": 2.0, "tier": "frontier"}],
            "routing": {"auto_models": ["router/auto"], "default_model": MODEL},
        }
    )
    gateway = Gateway(settings, Router(settings), UpstreamClient(sim_url))
    uvloop.run(serve(create_app(gateway), "127.0.0.1", port))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(role: str, *args: str, cpu: int | None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--role", role, *args], cwd=ROOT)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


async def _wait_ready(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load ----------------------------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))] * 1000.0


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, t_sched: float, stream: bool,
               out: dict[str, list[Any]]) -> None:
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json",
                                                         "authorization": "Bearer bench"}) as resp:
            ttfb = None
            async for _ in resp.content.iter_any():
                if ttfb is None:
                    ttfb = time.perf_counter() - t_sched
            if resp.status != 200:
                out["errors"].append(resp.status)
                return
        out["total"].append(time.perf_counter() - t_sched)
        if stream and ttfb is not None:
            out["ttfb"].append(ttfb)
    except (aiohttp.ClientError, TimeoutError) as exc:
        out["errors"].append(type(exc).__name__)


async def _load(url: str, rate: float, duration: float, warmup: float, stream: bool) -> dict[str, Any]:
    body = json.dumps({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": PROMPT}],
                       **({"stream_options": {"include_usage": True}} if stream else {})}).encode()
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=10)
    results: dict[str, list[Any]] = {"total": [], "ttfb": [], "errors": []}
    sink: dict[str, list[Any]] = {"total": [], "ttfb": [], "errors": []}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        n_warm, n = int(rate * warmup), int(rate * duration)
        t0 = time.perf_counter() + 0.05
        for i in range(n_warm + n):
            t_sched = t0 + i / rate
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(_one(session, url, body, t_sched, stream, results if i >= n_warm else sink))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return {
        "n": len(results["total"]),
        "errors": len(results["errors"]),
        "p50": _pct(results["total"], 50),
        "p99": _pct(results["total"], 99),
        "ttfb_p50": _pct(results["ttfb"], 50),
        "ttfb_p99": _pct(results["ttfb"], 99),
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


async def _bench(args: argparse.Namespace) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    two = len(cpus) >= 2
    if two:
        os.sched_setaffinity(0, {cpus[0]})
    sim_port, gw_port = _free_port(), _free_port()
    sim = _spawn("sim", str(sim_port), cpu=cpus[0] if two else None)
    sim_url = f"http://127.0.0.1:{sim_port}"
    gw = _spawn("gateway", str(gw_port), sim_url, cpu=cpus[1] if two else None)
    gw_url = f"http://127.0.0.1:{gw_port}"
    rows = []
    try:
        await _wait_ready(sim_url)
        await _wait_ready(gw_url)
        for stream in (False, True):
            for rate in args.rates:
                sim0 = _cpu_s(sim.pid)
                direct = await _load(sim_url + "/v1/chat/completions", rate, args.duration, args.warmup, stream)
                sim_cpu = (_cpu_s(sim.pid) - sim0) * 1000.0 / max(1, direct["n"] + int(rate * args.warmup))
                cpu0 = _cpu_s(gw.pid)
                proxied = await _load(gw_url + "/v1/chat/completions", rate, args.duration, args.warmup, stream)
                cpu1 = _cpu_s(gw.pid)
                total = proxied["n"] + int(rate * args.warmup)
                rows.append((stream, rate, direct, proxied, (cpu1 - cpu0) * 1000.0 / max(1, total), sim_cpu))
    finally:
        for proc in (gw, sim):
            proc.terminate()
            proc.wait(10)

    print(f"\nweave-router gateway vs direct (sim on CPU {cpus[0]}, gateway on CPU {cpus[-1]}), "
          f"{args.duration:g}s per cell after {args.warmup:g}s warm-up; latency in ms from the scheduled send")
    head = ("mode", "rate", "direct p50", "direct p99", "gw p50", "gw p99", "added p50", "added p99",
            "added ttfb p50", "added ttfb p99", "errors", "gw CPU ms/req", "sim CPU ms/req")
    print(" | ".join(head))
    for stream, rate, d, p, cpu, sim_cpu in rows:
        def add(key: str, d: dict[str, Any] = d, p: dict[str, Any] = p) -> float | None:
            return None if d[key] is None or p[key] is None else p[key] - d[key]

        print(" | ".join([
            "stream" if stream else "plain", f"{rate:g}", _fmt(d["p50"]), _fmt(d["p99"]), _fmt(p["p50"]),
            _fmt(p["p99"]), _fmt(add("p50")), _fmt(add("p99")), _fmt(add("ttfb_p50")), _fmt(add("ttfb_p99")),
            f"{d['errors']}/{p['errors']}", f"{cpu:.3f}", f"{sim_cpu:.3f}",
        ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="500,1000", help="comma-separated request rates per second")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--role", choices=["sim", "gateway"], help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role == "sim":
        _run_sim(int(rest[0]))
        return
    if args.role == "gateway":
        _run_gateway(int(rest[0]), rest[1])
        return
    args.rates = [float(r) for r in args.rates.split(",")]
    import uvloop

    uvloop.run(_bench(args))


if __name__ == "__main__":
    main()
