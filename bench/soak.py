"""Soak run (not CI): sustained load for N minutes against a running gateway (with the simulated provider
behind it), printing per minute: requests, errors, client-side latency p50/p99 and the gateway's RSS.
Steady RSS and flat p99 over the run are the pass criteria ("steady memory, no growth").

    weave-router up &                                      # or: weave-router gateway (sim providers)
    .venv/bin/python bench/soak.py --minutes 10 --rate 200 --pid $(pgrep -n -f 'weave-router up')
    .venv/bin/python bench/soak.py --embedded --minutes 2  # starts sim + gateway in this process
    .venv/bin/python bench/soak.py --up --minutes 5 --rate 200 --window-s 30
                                                           # starts `weave-router up` on a fresh data dir
                                                           # and prints the RSS of each of its processes

Loopback only; every loop is bounded by the deadline, so the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx

BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "fix the failing test in utils.py"}]}),
    ("/v1/responses", {"input": "add a --verbose flag", "store": False}),
    ("/v1/messages", {"max_tokens": 256, "messages": [{"role": "user", "content": "explain this stack trace"}]}),
]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _descendants(pid: int) -> list[int]:
    out = [pid]
    for p in out:  # grows while iterating: breadth first over the process tree
        with contextlib.suppress(OSError), open(f"/proc/{p}/task/{p}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def tree_rss_mb(pid: int) -> dict[str, float]:
    """RSS of ``pid`` and each of its descendants (``up``'s embedded broker and worker process), by name."""
    out: dict[str, float] = {}
    for p in _descendants(pid):
        rss = rss_mb(p)
        if rss is None:
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = str(p)
        out[f"{name}:{p}"] = round(rss, 1)
    return out


def pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"soak: refusing non-loopback target {url!r}")


class Window:
    def __init__(self) -> None:
        self.lat_ms: list[float] = []
        self.errors: dict[str, int] = {}

    def ok(self, ms: float) -> None:
        self.lat_ms.append(ms)

    def err(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def one(client: httpx.AsyncClient, model: str, stream: bool, win: Window, rng: random.Random) -> None:
    path, body = rng.choice(BODIES)
    body = {**body, "model": model, "stream": stream}
    t0 = time.perf_counter()
    try:
        if stream:
            async with client.stream("POST", path, json=body) as resp:
                async for _ in resp.aiter_raw():
                    pass
                status = resp.status_code
        else:
            resp = await client.post(path, json=body)
            status = resp.status_code
    except httpx.HTTPError as exc:
        win.err(type(exc).__name__)
        return
    if status >= 400:
        win.err(str(status))
    else:
        win.ok((time.perf_counter() - t0) * 1000)


async def soak(url: str, minutes: float, rate: float, concurrency: int, model: str, pid: int | None,
               stream_share: float, seed: int, window_s: float = 60.0) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"x-api-key": os.environ.get("SOAK_API_KEY", "soak"), "authorization": "Bearer " + os.environ.get("SOAK_API_KEY", "soak")}
    deadline = time.monotonic() + minutes * 60
    sem = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    print(f"soak: {url} for {minutes:g} min at {rate:g} req/s (max {concurrency} in flight), model {model}")
    print(f"{'win':>4} {'reqs':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'rss MB':>8}  error kinds")
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=60) as client:
        minute = 0
        first_rss: float | None = None
        while time.monotonic() < deadline:
            minute += 1
            win = Window()
            window_end = min(deadline, time.monotonic() + window_s)
            interval = 1.0 / rate
            next_at = time.monotonic()
            while time.monotonic() < window_end:
                await sem.acquire()

                async def run(w: Window = win) -> None:
                    try:
                        await one(client, model, rng.random() < stream_share, w, rng)
                    finally:
                        sem.release()

                task = asyncio.create_task(run())
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_at = time.monotonic()  # behind schedule: do not build a burst backlog
            lat = sorted(win.lat_ms)
            # The whole tree (gateway, broker, worker process), each process listed after the row.
            rss = sum(tree_rss_mb(pid).values()) if pid else rss_mb(os.getpid())
            if first_rss is None:
                first_rss = rss
            growth = f" (+{rss - first_rss:.1f})" if rss is not None and first_rss is not None else ""
            rss_txt = f"{rss:.1f}{growth}" if rss is not None else "n/a"
            print(f"{minute:>4} {len(lat) + sum(win.errors.values()):>7} {sum(win.errors.values()):>7} "
                  f"{pct(lat, 0.50):>8.1f} {pct(lat, 0.99):>8.1f} {rss_txt:>8}  {json.dumps(win.errors) if win.errors else ''}"
                  f"{'  per process ' + json.dumps(tree_rss_mb(pid)) if pid else ''}  load {os.getloadavg()[0]:.1f}",
                  flush=True)
        # Bounded drain: in-flight requests get 30 s, then they are cancelled.
        if pending:
            _, late = await asyncio.wait(pending, timeout=30)
            for t in late:
                t.cancel()


@contextlib.contextmanager
def embedded_stack() -> Iterator[str]:
    """Sim + gateway on loopback in a background thread (this process); yields the gateway URL."""
    import uvicorn

    from streams.config import load_settings
    from streams.ingress.app import create_app, listen_socket, uvicorn_config
    from streams.ingress.gateway import Gateway
    from streams.providers.sim.config import SimConfig
    from streams.providers.sim.server import running_sim

    ready = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        settings = load_settings(env={})
        sim = SimConfig.from_settings(settings)
        async with running_sim(sim) as sim_url:
            gateway = Gateway.from_settings(settings, sim_url=sim_url)
            sock = listen_socket("127.0.0.1", 0)
            server = uvicorn.Server(uvicorn_config(create_app(gateway)))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.05)
            url.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
            ready.set()
            await stop[0].wait()
            server.should_exit = True
            await asyncio.wait_for(task, timeout=10)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        sys.exit("soak: embedded stack did not start")
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=15)


@contextlib.contextmanager
def up_process(broker_max_mb: float | None = None) -> Iterator[tuple[str, int]]:
    """``weave-router up --port 0`` on a fresh data dir (simulated providers); yields (URL, pid).
    ``broker_max_mb``: the embedded broker's memory limit (``kafka.embedded_max_rss_mb``) instead of the default."""
    import subprocess
    import tempfile

    import yaml

    from streams.config import default_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="weave-soak-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLICKHOUSE_", "WEAVE_"))}
        env["WEAVE_DATA_DIR"] = os.path.join(tmp, "data")
        log_path = os.path.join(tmp, "up.log")
        args = ["up", "--port", "0"]
        if broker_max_mb is not None:
            config = default_config()
            config.setdefault("kafka", {})["embedded_max_rss_mb"] = broker_max_mb
            config_path = os.path.join(tmp, "config.yaml")
            with open(config_path, "w") as f:
                yaml.safe_dump(config, f)
            args += ["--config", config_path]
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=root, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            url = ""
            deadline = time.monotonic() + 120
            while not url and time.monotonic() < deadline and proc.poll() is None:
                with open(log_path) as f:
                    text = f.read()
                if "listening on " in text:
                    url = text.split("listening on ", 1)[1].split()[0]
                time.sleep(0.2)
            if not url:
                with open(log_path) as f:
                    sys.exit(f"soak: weave-router up did not start:\n{f.read()[-2000:]}")
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8787", help="gateway base URL (loopback only)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second offered")
    ap.add_argument("--concurrency", type=int, default=64, help="max requests in flight")
    ap.add_argument("--model", default="router/auto")
    ap.add_argument("--stream-share", type=float, default=0.5, help="share of streaming requests")
    ap.add_argument("--pid", type=int, default=None, help="gateway process id, for its RSS (default: this process)")
    ap.add_argument("--embedded", action="store_true", help="start sim + gateway in this process")
    ap.add_argument("--up", action="store_true", help="start `weave-router up` (all its processes measured)")
    ap.add_argument("--broker-max-mb", type=float, default=None,
                    help="with --up: the embedded broker's memory limit (kafka.embedded_max_rss_mb)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window-s", type=float, default=60.0, help="report interval (default: a minute)")
    args = ap.parse_args()
    if args.minutes <= 0 or args.minutes > 24 * 60 or args.rate <= 0:
        sys.exit("soak: --minutes must be in (0, 1440] and --rate > 0")
    if args.up:
        with up_process(args.broker_max_mb) as (url, pid):
            asyncio.run(soak(url, args.minutes, args.rate, args.concurrency, args.model, pid,
                             args.stream_share, args.seed, args.window_s))
        return
    with embedded_stack() if args.embedded else contextlib.nullcontext(args.url) as url:
        check_loopback(url)
        asyncio.run(soak(url, args.minutes, args.rate, args.concurrency, args.model, args.pid,
                         args.stream_share, args.seed, args.window_s))


if __name__ == "__main__":
    main()
