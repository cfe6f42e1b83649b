"""``weave-router up`` as a child process for end-to-end tests: a clean environment, the default config
with the simulator at full speed, and a clean stop (SIGTERM, then kill)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "streams" / "default_config.yaml"

# Nothing from the developer's shell may steer the service or the clients under test.
_LEAK_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "WEAVE_", "KAFKA_", "CLICKHOUSE_")
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAK_PREFIXES) and k.lower() not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@contextlib.contextmanager
def running_up(tmp: Path, start_timeout_s: float) -> Iterator[tuple[str, Path]]:
    """Start ``weave-router up --port 0`` in ``tmp``; yield (base URL, log path)."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["sim"] = {"ttft_ms": 0, "tokens_per_s": 0}  # as fast as possible: the tests time the clients
    config_file = tmp / "weave-router.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = tmp / "service.log"
    # COLUMNS: the console must not wrap the "listening on" line the URL is read from.
    env = {**child_env(), "WEAVE_DATA_DIR": str(tmp / "data"), "COLUMNS": "250"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "up", "--port", "0", "--config", str(config_file)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        url = ""
        deadline = time.monotonic() + start_timeout_s
        while not url and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"listening on (http://\S+)", log.read_text())
            url = m.group(1) if m else ""
            time.sleep(0.1)
        assert url, f"weave-router up did not report its address:\n{log.read_text()}"
        yield url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Service:
    url: str
    sim_url: str
    log: Path


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def running_service(tmp: Path, start_timeout_s: float) -> Iterator[Service]:
    """``running_up`` with the simulator's address read from ``/health``."""
    with running_up(tmp, start_timeout_s) as (url, log):
        detail = get_json(f"{url}/health")["components"]["simulator"]["detail"]
        sim = re.search(r"http://[\d.]+:\d+", detail)
        assert sim, f"no simulator URL in /health: {detail!r}"
        yield Service(url, sim.group(0), log)
