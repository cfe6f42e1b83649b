"""All of Weave Router's benchmarks in one run: one table on stdout, every figure in one JSON file.

    .venv/bin/python bench/run_all.py [--quick] [--out bench-results.json]
    weave-router bench [same flags]          # the CLI calls main(argv)

Parts (each a separate process, so CPU pinning and crashes stay contained; ``--skip NAME`` drops one):

- ``gateway``: bench_gateway.py, added latency over the direct call at fixed open-loop rates, plain and
  streamed (TTFT overhead), with the gateway's CPU per request;
- ``decision``: bench_decision.py, routing decision latency on the 76 KB Claude Code request shape;
- ``streams``: bench_streams.py (when present), router agent decisions/s, learner outcomes/s, sink rows/s;
- ``rss``: rss.py, gateway memory over 100k requests (10k with ``--quick``).

The machine's load average is recorded with every part: on a shared box the figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PARTS = ("gateway", "decision", "streams", "rss")

# DESIGN.md targets, and the TensorZero reference measured by ../shared/bench on this machine (RESULTS.md):
# +0.4 ms p50 / +0.8-1.0 ms p99 added at 1,000 req/s, 0.3-0.4 ms CPU per request.
TARGETS = {"added_p50_ms": 0.5, "added_p99_ms": 2.0, "ttft_p99_ms": 2.0, "decision_p99_ms": 1.0,
           "router_rps": 5000.0, "learner_ops": 10000.0, "sink_rows": 50000.0}
TENSORZERO = {"added_p50_ms": 0.4, "added_p99_ms": 0.9, "cpu_ms_per_req": 0.35}


def _run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return 124, f"timed out after {timeout:g}s\n{out}", load
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
    return proc.returncode, proc.stdout, load


def gateway(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / "gateway.json"
    cmd = [sys.executable, str(BENCH / "bench_gateway.py"), "--rates", args.rates, "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--out", str(out)]
    rc, stdout, load = _run(cmd, timeout=1800)
    result: dict[str, Any] = {"rc": rc, "loadavg_1m_before": load}
    if out.exists():
        result.update(json.loads(out.read_text()))
    else:
        result["output"] = stdout[-2000:]
    return result


def decision(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = 1000 if args.quick else 5000
    rc, stdout, load = _run([sys.executable, str(BENCH / "bench_decision.py"), "--n", str(n)], timeout=600)
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            rows[m.group(1).strip()] = {"p50_ms": float(m.group(2)), "p99_ms": float(m.group(3)),
                                        "cpu_p50_ms": float(m.group(4)), "cpu_p99_ms": float(m.group(5))}
    return {"rc": rc, "loadavg_1m_before": load, "n": n, "rows": rows, "output": stdout[-3000:]}


def streams(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    script = BENCH / "bench_streams.py"
    if not script.exists():
        return {"rc": None, "skipped": "bench/bench_streams.py not present"}
    cmd = [sys.executable, str(script)]
    if args.quick:
        cmd += ["--requests", "2000", "--outcomes", "4000", "--rows", "40000"]
    rc, stdout, load = _run(cmd, timeout=1200)
    found: dict[str, Any] = {"rc": rc, "loadavg_1m_before": load, "output": stdout[-3000:]}
    for key, pattern in (("router_rps", r"router agent.*?([\d,]+) requests/s"),
                         ("learner_ops", r"learner.*?([\d,]+) outcomes/s"),
                         ("sink_rows", r"sink.*?([\d,]+) rows/s")):
        m = re.search(pattern, stdout)
        if m:
            found[key] = float(m.group(1).replace(",", ""))
    return found


def rss(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / "rss.json"
    n = args.rss_requests or (10_000 if args.quick else 100_000)
    rc, stdout, load = _run([sys.executable, str(BENCH / "rss.py"), "--requests", str(n), "--out", str(out)],
                            timeout=1800)
    result: dict[str, Any] = {"rc": rc, "loadavg_1m_before": load}
    if out.exists():
        result.update(json.loads(out.read_text()))
    else:
        result["output"] = stdout[-2000:]
    return result


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, note) rows."""
    rows: list[tuple[str, str, str, str]] = []
    g = results.get("gateway") or {}
    for r in g.get("rows", []):
        label = f" [{r['client']}]" if r.get("client", "http1") != "http1" else ""
        tag = f"{r['mode']} @ {r['rate']:g} req/s{label}"
        load = f"load {r['loadavg_1m']:.1f}"
        errs = r["gateway"]["errors"]
        note = f"{load}; direct p50/p99 {_f(r['direct']['p50'])}/{_f(r['direct']['p99'])} ms; errors {errs}"
        if r["mode"] == "plain":
            rows.append((f"gateway added p50, {tag}", _f(r["added_p50"]) + " ms",
                         f"<= {TARGETS['added_p50_ms']} (TZ +{TENSORZERO['added_p50_ms']})", note))
            rows.append((f"gateway added p99, {tag}", _f(r["added_p99"]) + " ms",
                         f"<= {TARGETS['added_p99_ms']} (TZ +{TENSORZERO['added_p99_ms']})", ""))
        else:
            rows.append((f"stream TTFT added p50, {tag}", _f(r["added_ttfb_p50"]) + " ms", "", note))
            rows.append((f"stream TTFT added p99, {tag}", _f(r["added_ttfb_p99"]) + " ms",
                         f"<= {TARGETS['ttft_p99_ms']}", ""))
            rows.append((f"stream end-to-end added p99, {tag}", _f(r["added_p99"]) + " ms", "", ""))
        cpu = r["gw_cpu_ms_per_req"]
        rows.append((f"gateway CPU per request, {tag}", f"{cpu:.3f} ms",
                     f"<= {2 * TENSORZERO['cpu_ms_per_req']:.2f} (2x TZ)",
                     f"{cpu / TENSORZERO['cpu_ms_per_req']:.1f}x TZ; sim {r['sim_cpu_ms_per_req']:.3f} ms"))
    d = results.get("decision") or {}
    for name, r in d.get("rows", {}).items():
        rows.append((f"decision {name}", f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f} ms p50/p99",
                     f"p99 <= {TARGETS['decision_p99_ms']}", f"load {d.get('loadavg_1m_before', 0):.1f}"))
    s = results.get("streams") or {}
    if s.get("skipped"):
        rows.append(("stream agents", "skipped", "", s["skipped"]))
    for key, label, unit in (("router_rps", "router agent (decide)", "requests/s"),
                             ("learner_ops", "learner", "outcomes/s"), ("sink_rows", "sink (chDB)", "rows/s")):
        if key in s:
            rows.append((label, f"{s[key]:,.0f} {unit}", f">= {TARGETS[key]:,.0f}",
                         f"{s[key] / TARGETS[key]:.1f}x target; load {s.get('loadavg_1m_before', 0):.1f}"))
    m = results.get("rss") or {}
    if "rss_end_mb" in m:
        rows.append((f"gateway RSS over {m['requests']:,} requests",
                     f"{m['rss_after_warmup_mb']:.1f} -> {m['rss_end_mb']:.1f} MB", "no growth",
                     f"{m['growth_mb']:+.1f} MB ({m['growth_bytes_per_request']:+.0f} B/req), "
                     f"{m['errors']} errors, load {m.get('loadavg_1m_before', 0):.1f}"))
    for part in PARTS:
        rc = (results.get(part) or {}).get("rc")
        if rc not in (0, None):
            rows.append((f"{part} benchmark", f"FAILED (rc {rc})", "", ""))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows + [("metric", "value", "target", "note")]) for i in range(4)]
    line = " | ".join(h.ljust(w) for h, w in zip(("metric", "value", "target", "note"), widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter cells, fewer requests (a few minutes)")
    parser.add_argument("--rates", default="500,1000", help="gateway open-loop rates (req/s)")
    parser.add_argument("--duration", type=float, help="gateway: measured seconds per cell (10; --quick 5)")
    parser.add_argument("--warmup", type=float, help="gateway: warm-up seconds per cell (3; --quick 2)")
    parser.add_argument("--rss-requests", type=int, help="requests for the RSS check (100k; --quick 10k)")
    parser.add_argument("--skip", action="append", default=[], choices=PARTS, help="leave a part out")
    parser.add_argument("--out", help="write every figure as JSON to this file")
    args = parser.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 10.0)
    args.warmup = args.warmup or (2.0 if args.quick else 3.0)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "argv": argv if argv is not None else sys.argv[1:],
    }
    runners = {"gateway": gateway, "decision": decision, "streams": streams, "rss": rss}
    with tempfile.TemporaryDirectory() as tmp:
        for part in PARTS:
            if part in args.skip:
                continue
            print(f"[bench] {part} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            results[part] = runners[part](args, Path(tmp))
            results[part]["wall_s"] = time.perf_counter() - t
    results["loadavg_end"] = os.getloadavg()
    rows = table(results)
    print_table(rows)
    print(f"\nload average 1/5/15 min: start {' '.join(f'{x:.2f}' for x in results['loadavg_start'])}, "
          f"end {' '.join(f'{x:.2f}' for x in results['loadavg_end'])}; {results['cpus']} CPUs")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0 if all((results.get(p) or {}).get("rc") in (0, None) for p in PARTS) else 1


if __name__ == "__main__":
    sys.exit(main())
