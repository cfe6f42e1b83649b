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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import urllib.request

from streams.providers.http1 import Http1Error, Http1Pool, Origin, build_head  # noqa: E402

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


def _run_gateway(port: int, sim_url: str, client: str = "http1") -> None:
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
            # Past saturation the breaker's latency-spike rule opens and the gateway answers fast 503s,
            # which would be measured as a fast gateway; this bench measures the relay path itself.
            "reliability": {"breaker": {"enabled": False}},
        }
    )
    # "<client>+lean": uvicorn without proxy-header rewriting, Server and Date headers (a proposal for
    # streams/ingress/app.py, measured here before it is made).
    client, lean = client.removesuffix("+lean"), client.endswith("+lean")
    opts: dict[str, Any] = {"proxy_headers": False, "server_header": False, "date_header": False} if lean else {}
    if client != "http1":
        raise SystemExit(f"unknown gateway variant {client!r}: http1 or http1+lean")
    upstream = UpstreamClient(sim_url)
    gateway = Gateway(settings, Router(settings), upstream)
    uvloop.run(serve(create_app(gateway), "127.0.0.1", port, **opts))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(role: str, *args: str, cpu: int | None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--role", role, *args], cwd=ROOT)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


async def _wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:  # noqa: S310 (local URL)
                if r.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
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


async def _one(pool: Http1Pool, origin: Origin, head: bytes, body: bytes, t_sched: float, stream: bool,
               out: dict[str, list[Any]]) -> None:
    conn = None
    try:
        conn = await pool.request(origin, head, body, connect_timeout=5.0, first_byte_timeout=10.0)
        ttfb = None
        while True:
            if conn.buffer:
                conn.take()
                if ttfb is None:
                    ttfb = time.perf_counter() - t_sched
                continue
            if conn.complete:
                break
            if conn.lost or conn.error:
                raise Http1Error("broken", "read")
            await conn.wait(10.0)
        status = conn.status
        pool.release(conn)
        if status != 200:
            out["errors"].append(str(status))
            return
        out["total"].append(time.perf_counter() - t_sched)
        if stream and ttfb is not None:
            out["ttfb"].append(ttfb)
    except Http1Error as exc:
        out["errors"].append(exc.kind)
    except TimeoutError:
        out["errors"].append("timeout")
    finally:
        if conn is not None:
            pool.discard(conn)  # no-op once released


async def _load(url: str, rate: float, duration: float, warmup: float, stream: bool) -> dict[str, Any]:
    """Open loop: request i is due at t0 + i/rate whatever the earlier ones do; latency from that time.

    The generator is this project's own lean HTTP/1.1 pool (streams/providers/http1.py), the same for the
    direct and the proxied calls: a heavier client (aiohttp: ~0.4 ms CPU/request) sharing a CPU with the
    simulator became the bottleneck at 1,000 req/s.
    """
    body = json.dumps({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": PROMPT}],
                       **({"stream_options": {"include_usage": True}} if stream else {})}).encode()
    origin = Origin(url)
    head = build_head(origin, {"content-type": "application/json", "authorization": "Bearer bench"}, len(body))
    pool = Http1Pool(max_connections=2048)
    results: dict[str, list[Any]] = {"total": [], "ttfb": [], "errors": []}
    sink: dict[str, list[Any]] = {"total": [], "ttfb": [], "errors": []}
    tasks: set[asyncio.Task[None]] = set()
    n_warm, n = int(rate * warmup), int(rate * duration)
    lag: list[float] = []
    t0 = time.perf_counter() + 0.05
    try:
        for i in range(n_warm + n):
            t_sched = t0 + i / rate
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i >= n_warm:
                lag.append(-delay)
            task = asyncio.ensure_future(
                _one(pool, origin, head, body, t_sched, stream, results if i >= n_warm else sink))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=15.0)
    finally:
        await pool.close()
    errors: dict[str, int] = {}
    for e in results["errors"]:
        errors[e] = errors.get(e, 0) + 1
    return {
        "n": len(results["total"]),
        "errors": len(results["errors"]),
        "error_kinds": errors,
        "p50": _pct(results["total"], 50),
        "p99": _pct(results["total"], 99),
        "ttfb_p50": _pct(results["ttfb"], 50),
        "ttfb_p99": _pct(results["ttfb"], 99),
        "dispatch_lag_p99": _pct(lag, 99) if lag else 0.0,
    }


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _added(d: dict[str, Any], p: dict[str, Any], key: str) -> float | None:
    return None if d[key] is None or p[key] is None else p[key] - d[key]


async def run(rates: list[float], duration: float, warmup: float, modes: tuple[str, ...] = ("plain", "stream"),
              clients: tuple[str, ...] = ("http1",)) -> dict[str, Any]:
    """Runs every (mode, rate) cell: direct, then through each gateway variant; returns rows for JSON."""
    cpus = sorted(os.sched_getaffinity(0))
    two = len(cpus) >= 2
    if two:
        os.sched_setaffinity(0, {cpus[0]})
    sim_port = _free_port()
    sim = _spawn("sim", str(sim_port), cpu=cpus[0] if two else None)
    sim_url = f"http://127.0.0.1:{sim_port}"
    gws: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rows: list[dict[str, Any]] = []
    try:
        for client in clients:
            port = _free_port()
            gws[client] = (_spawn("gateway", str(port), sim_url, client, cpu=cpus[-1] if two else None),
                           f"http://127.0.0.1:{port}")
        await _wait_ready(sim_url)
        for _, url in gws.values():
            await _wait_ready(url)
        for mode in modes:
            stream = mode == "stream"
            for rate in rates:
                load1 = os.getloadavg()[0]
                sim0 = _cpu_s(sim.pid)
                direct = await _load(sim_url + "/v1/chat/completions", rate, duration, warmup, stream)
                sim_cpu = (_cpu_s(sim.pid) - sim0) * 1000.0 / max(1, direct["n"] + int(rate * warmup))
                for client, (proc, url) in gws.items():
                    cpu0 = _cpu_s(proc.pid)
                    proxied = await _load(url + "/v1/chat/completions", rate, duration, warmup, stream)
                    total = proxied["n"] + int(rate * warmup)
                    rows.append({
                        "mode": mode, "rate": rate, "client": client, "loadavg_1m": load1,
                        "direct": direct, "gateway": proxied,
                        "added_p50": _added(direct, proxied, "p50"), "added_p99": _added(direct, proxied, "p99"),
                        "added_ttfb_p50": _added(direct, proxied, "ttfb_p50"),
                        "added_ttfb_p99": _added(direct, proxied, "ttfb_p99"),
                        "gw_cpu_ms_per_req": (_cpu_s(proc.pid) - cpu0) * 1000.0 / max(1, total),
                        "sim_cpu_ms_per_req": sim_cpu,
                    })
    finally:
        for proc in [p for p, _ in gws.values()] + [sim]:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if two:
            os.sched_setaffinity(0, set(cpus))
    return {"cpus": {"sim_and_load": cpus[0], "gateway": cpus[-1]} if two else None,
            "duration_s": duration, "warmup_s": warmup, "rows": rows}


def print_table(result: dict[str, Any]) -> None:
    print(f"\nweave-router gateway vs direct ({result['cpus'] or 'no pinning'}), {result['duration_s']:g}s per cell "
          f"after {result['warmup_s']:g}s warm-up; latency in ms from the scheduled send")
    head = ("mode", "rate", "client", "direct p50", "direct p99", "gw p50", "gw p99", "added p50", "added p99",
            "added ttfb p50", "added ttfb p99", "errors d/gw", "gw CPU ms/req", "sim CPU ms/req", "load1")
    print(" | ".join(head))
    for r in result["rows"]:
        d, p = r["direct"], r["gateway"]
        kinds = ",".join(f"{k}:{v}" for k, v in p["error_kinds"].items())
        print(" | ".join([
            r["mode"], f"{r['rate']:g}", r["client"], _fmt(d["p50"]), _fmt(d["p99"]), _fmt(p["p50"]), _fmt(p["p99"]),
            _fmt(r["added_p50"]), _fmt(r["added_p99"]), _fmt(r["added_ttfb_p50"]), _fmt(r["added_ttfb_p99"]),
            f"{d['errors']}/{p['errors']}" + (f" ({kinds})" if kinds else ""),
            f"{r['gw_cpu_ms_per_req']:.3f}", f"{r['sim_cpu_ms_per_req']:.3f}", f"{r['loadavg_1m']:.2f}",
        ]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="500,1000", help="comma-separated request rates per second")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    parser.add_argument("--modes", default="plain,stream", help="plain, stream or both")
    parser.add_argument("--clients", default="http1",
                        help="gateway variants to compare: http1; "
                             "a +lean suffix also turns off uvicorn's proxy headers, Server and Date headers")
    parser.add_argument("--out", help="write the rows as JSON to this file")
    parser.add_argument("--role", choices=["sim", "gateway"], help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.role == "sim":
        _run_sim(int(rest[0]))
        return
    if args.role == "gateway":
        _run_gateway(int(rest[0]), rest[1], rest[2] if len(rest) > 2 else "http1")
        return
    import uvloop

    result = uvloop.run(run([float(r) for r in args.rates.split(",")], args.duration, args.warmup,
                            tuple(args.modes.split(",")), tuple(args.clients.split(","))))
    print_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
