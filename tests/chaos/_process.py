"""``weave-router up`` as a child process the chaos suite may kill: start on a data dir, SIGKILL, start
again on the same dir, read what ClickHouse stored once the service is gone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_LEAK_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "WEAVE_", "KAFKA_", "CLICKHOUSE_")


def write_config(path: Path, **overrides: Any) -> Path:
    config = yaml.safe_load((ROOT / "streams" / "default_config.yaml").read_text())
    config["sim"] = {"ttft_ms": 0, "tokens_per_s": 0}
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


class UpProcess:
    """One run of ``weave-router up --port 0`` on ``data_dir`` (its log beside the data dir)."""

    def __init__(self, data_dir: Path, config: Path, log: Path) -> None:
        self.data_dir, self.config, self.log = data_dir, config, log
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAK_PREFIXES)}
        env.update({"WEAVE_DATA_DIR": str(self.data_dir), "COLUMNS": "250", "NO_PROXY": "127.0.0.1,localhost"})
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "up", "--port", "0", "--config", str(self.config)],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        deadline = time.monotonic() + timeout_s
        while not self.url and time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on (http://\S+)", self.log.read_text())
            self.url = m.group(1) if m else ""
            time.sleep(0.1)
        assert self.url, f"weave-router up did not report its address:\n{self.log.read_text()[-3000:]}"
        return self.url

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed by the process itself."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_QUERY = """
import json, sys
import clickhouse_connect
c = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1], database="weave")
print(json.dumps(c.query(sys.argv[2]).result_rows))
"""


def query_stopped(data_dir: Path, sql: str) -> list[list[Any]]:
    """Rows of ``sql`` on the data dir's chDB engine, read by a separate process (chDB binds one engine
    path per process, and this test process may hold another); the service must be stopped."""
    out = subprocess.run([sys.executable, "-c", _QUERY, str(data_dir / "clickhouse"), sql],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows: list[list[Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows
