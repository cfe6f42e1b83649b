"""The built wheel works on its own: build it, install it into a clean venv, run ``weave-router up``
from an unrelated directory on the embedded default, send one request, and find its trace in storage.

Catches what an editable install hides: files found through the source tree instead of the package.
Usage: python .ci/wheel_smoke.py [--python python3.11]   (stdlib only; exits non-zero on failure)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LEAK_PREFIXES = ("ANTHROPIC_", "OPENAI_", "WEAVE_", "KAFKA_", "CLICKHOUSE_", "PYTHON")


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def http(method: str, url: str, body: dict[str, object] | None = None, headers: dict[str, str] | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")


def wait_for(what: str, check, timeout_s: float, proc: subprocess.Popen[str], log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"weave-router up exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}:\n{log.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default="python3.11", help="interpreter for the clean venv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="weave-wheel-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAK_PREFIXES)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)], env=env)
    wheel = next((tmp / "dist").glob("weave_router-*.whl"))
    run([args.python, "-m", "venv", str(tmp / "venv")], env=env)
    venv_bin = tmp / "venv" / "bin"
    run([str(venv_bin / "pip"), "install", "-q", str(wheel)], env=env)

    elsewhere = tmp / "elsewhere"  # no checkout, no config: only what the wheel ships
    elsewhere.mkdir()
    where = subprocess.run([str(venv_bin / "python"), "-c", "import streams; print(streams.__file__)"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(tmp / "venv")):
        sys.exit(f"streams imported from {where}, not from the installed wheel")

    log = tmp / "up.log"
    up_env = {**env, "WEAVE_DATA_DIR": str(tmp / "data"), "COLUMNS": "250"}
    with log.open("w") as out:
        proc = subprocess.Popen([str(venv_bin / "weave-router"), "up", "--port", "0"], cwd=elsewhere, env=up_env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        def address() -> str | None:
            m = re.search(r"listening on (http://\S+)", log.read_text())
            return m.group(1) if m else None

        base = wait_for("the listening address", address, 180, proc, log)
        wait_for("/health", lambda: http("GET", base + "/health")[0] == 200, 60, proc, log)
        session = f"wheel-smoke-{uuid.uuid4().hex[:8]}"
        body: dict[str, object] = {"model": "router/auto", "messages": [{"role": "user", "content": "fix the failing test"}]}
        status, headers, answer = http("POST", base + "/v1/chat/completions", body, {"x-router-session": session})
        lower = {k.lower(): v for k, v in headers.items()}
        if status != 200 or not answer["choices"][0]["message"]["content"] or "x-router-decision-id" not in lower:
            sys.exit(f"unexpected answer {status} {headers} {answer}")
        model = lower["x-router-model"]

        def stored() -> dict[str, object] | None:
            rows = http("GET", base + "/v1/analytics/sessions?since=1h")[2]
            return next((r for r in rows if r["session_id"] == session), None)

        row = wait_for("the trace in ClickHouse", stored, 60, proc, log)
        if row["requests"] != 1 or row["models"] != [model]:
            sys.exit(f"stored trace does not match the request (model {model}): {row}")
        print(f"wheel smoke: {wheel.name} served {model} for {session}; trace stored: {row}")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        if code != 0:
            sys.exit(f"weave-router up exited {code} on Ctrl-C:\n{log.read_text()}")
        return 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    sys.exit(main())
