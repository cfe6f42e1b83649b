"""Gateway memory over many requests: RSS of the gateway process sampled while it relays N requests.

    .venv/bin/python bench/rss.py [--requests 100000] [--concurrency 64] [--out rss.json]

The simulator and the gateway run as in bench_gateway.py (separate processes, pinned when there are two
CPUs). Requests alternate plain and streamed answers, closed loop at a fixed concurrency (this measures
memory, not latency). RSS is read from /proc after a warm-up of 5% of the requests (pools, caches and
the allocator's arenas filled) and then at every tenth; "growth" is the last sample minus the one
after warm-up. A leak of even 100 bytes per request shows up as ~10 MB over 100k requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_gateway as bg  # noqa: E402

from streams.providers.http1 import Http1Error, Http1Pool, Origin, build_head  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


async def _drive(url: str, pid: int, requests: int, concurrency: int) -> dict[str, Any]:
    pool = Http1Pool()
    heads: list[tuple[bytes, bytes]] = []
    origin = Origin(url + "/v1/chat/completions")
    for stream in (False, True):
        body = json.dumps({"model": bg.MODEL, "stream": stream,
                           "messages": [{"role": "user", "content": bg.PROMPT}]}).encode()
        heads.append((build_head(origin, {"content-type": "application/json", "authorization": "Bearer b"},
                                 len(body)), body))
    counter = iter(range(requests))
    errors = 0
    samples: list[tuple[int, float]] = []
    warm = max(1, requests // 20)
    step = max(1, requests // 10)

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            head, body = heads[i & 1]
            try:
                conn = await pool.request(origin, head, body, connect_timeout=5.0, first_byte_timeout=10.0)
                while not conn.complete:
                    if conn.lost or conn.error:
                        raise Http1Error("broken", "read")
                    await conn.wait(10.0)
                conn.take()
                if conn.status != 200:
                    errors += 1
                pool.release(conn)
            except (Http1Error, TimeoutError):
                errors += 1
            if i == warm or (i > warm and i % step == 0) or i == requests - 1:
                samples.append((i + 1, rss_mb(pid)))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await pool.close()
    samples.sort()
    after_warm = samples[0][1] if samples else 0.0
    last = rss_mb(pid)
    return {
        "requests": requests, "errors": errors, "seconds": elapsed, "req_per_s": requests / elapsed,
        "rss_after_warmup_mb": after_warm, "rss_end_mb": last, "rss_max_mb": max(s[1] for s in samples),
        "growth_mb": last - after_warm,
        "growth_bytes_per_request": (last - after_warm) * 1024 * 1024 / max(1, requests - warm),
        "samples": samples,
    }


async def run(requests: int, concurrency: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    two = len(cpus) >= 2
    if two:
        os.sched_setaffinity(0, {cpus[0]})
    sim_port, gw_port = bg._free_port(), bg._free_port()
    sim = bg._spawn("sim", str(sim_port), cpu=cpus[0] if two else None)
    sim_url = f"http://127.0.0.1:{sim_port}"
    gw = bg._spawn("gateway", str(gw_port), sim_url, "http1", cpu=cpus[-1] if two else None)
    gw_url = f"http://127.0.0.1:{gw_port}"
    try:
        await bg._wait_ready(sim_url)
        await bg._wait_ready(gw_url)
        rss_start = rss_mb(gw.pid)
        result = await _drive(gw_url, gw.pid, requests, concurrency)
        result["rss_idle_mb"] = rss_start
        return result
    finally:
        for proc in (gw, sim):
            proc.terminate()
            proc.wait(10)
        if two:
            os.sched_setaffinity(0, set(cpus))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    import uvloop

    r = uvloop.run(run(args.requests, args.concurrency))
    print(f"gateway RSS over {r['requests']:,} requests ({r['req_per_s']:,.0f} req/s closed loop, "
          f"{r['errors']} errors): idle {r['rss_idle_mb']:.1f} MB, after warm-up {r['rss_after_warmup_mb']:.1f} MB, "
          f"end {r['rss_end_mb']:.1f} MB, max {r['rss_max_mb']:.1f} MB, growth {r['growth_mb']:+.1f} MB "
          f"({r['growth_bytes_per_request']:+.1f} B/request)")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
