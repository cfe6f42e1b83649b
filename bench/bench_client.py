"""CPU per request of the upstream client alone (the http1 pool), without uvicorn or the gateway around it.

    .venv/bin/python bench/bench_client.py [--requests 5000] [--concurrency 32]

The simulator runs in its own process (pinned to the other CPU when there are two); this process sends
closed-loop requests through ``UpstreamClient.send`` + ``read()``/``chunks()`` exactly as the gateway
does, and reports its own CPU time (user + system) per request. That is the client's cost plus the
loop's socket work, without uvicorn or the gateway pipeline around it.
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

from streams.config import ProviderSettings  # noqa: E402


async def _drive(client: Any, url: str, n: int, concurrency: int, stream: bool) -> dict[str, float]:
    provider = ProviderSettings(name="sim", dialect="openai_chat", base_url=url + "/v1")
    body = json.dumps({"model": bg.MODEL, "stream": stream, "messages": [{"role": "user", "content": bg.PROMPT}],
                       **({"stream_options": {"include_usage": True}} if stream else {})}).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sim-key"}
    counter = iter(range(n))

    async def worker() -> None:
        for _ in counter:
            resp = await client.send(provider, "/chat/completions", body, headers, stream)
            if stream:
                async for _chunk in resp.chunks():
                    pass
            else:
                await resp.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm the pool
    counter = iter(range(n))
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"cpu_ms_per_req": cpu * 1000 / n, "req_per_s": n / wall}


async def run(n: int, concurrency: int) -> dict[str, Any]:
    from streams.providers.client import UpstreamClient

    cpus = sorted(os.sched_getaffinity(0))
    two = len(cpus) >= 2
    port = bg._free_port()
    sim = bg._spawn("sim", str(port), cpu=cpus[0] if two else None)
    if two:
        os.sched_setaffinity(0, {cpus[-1]})
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"loadavg_1m": os.getloadavg()[0], "requests": n, "concurrency": concurrency}
    try:
        await bg._wait_ready(url)
        for stream in (False, True):
            async with UpstreamClient() as client:
                out[f"http1_{'stream' if stream else 'plain'}"] = await _drive(client, url, n, concurrency, stream)
    finally:
        sim.terminate()
        sim.wait(10)
        if two:
            os.sched_setaffinity(0, set(cpus))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    import uvloop

    r = uvloop.run(run(args.requests, args.concurrency))
    print(f"upstream client alone, {r['requests']} requests x {r['concurrency']} concurrent, load {r['loadavg_1m']:.2f}")
    print("mode   | client  | CPU ms/request | req/s")
    for key, v in r.items():
        if isinstance(v, dict):
            client, mode = key.split("_")
            print(f"{mode:<6} | {client:<7} | {v['cpu_ms_per_req']:14.3f} | {v['req_per_s']:,.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
