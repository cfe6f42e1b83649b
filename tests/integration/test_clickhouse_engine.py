"""The embedded engine opens with the configured memory bounds, not chDB's server-sized defaults
(each cache half the machine's RAM, the engine 90% of it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# chDB runs one engine per process, bound to the first data dir it opens: each case gets a process.
PROBE = """
import json, sys
from streams.config import Settings
from streams.storage import connect_configured
settings = Settings.model_validate(json.loads(sys.argv[1]))
client = connect_configured(settings)
rows = client.query(
    "SELECT name, value FROM system.server_settings WHERE name IN "
    "('max_server_memory_usage', 'mark_cache_size', 'primary_index_cache_size', 'index_mark_cache_size')"
).result_rows
print(json.dumps({name: int(value) for name, value in rows}))
"""

MIB = 1024 * 1024


def engine_settings(clickhouse: dict[str, object]) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps({"clickhouse": clickhouse})],
                         capture_output=True, text=True, timeout=90, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_engine_takes_the_configured_bounds(tmp_path: Path) -> None:
    seen = engine_settings({"url": f"chdb://{tmp_path}/ch", "embedded_max_memory_mb": 512, "embedded_cache_mb": 8})
    assert seen == {"max_server_memory_usage": 512 * MIB, "mark_cache_size": 8 * MIB,
                    "primary_index_cache_size": 8 * MIB, "index_mark_cache_size": 8 * MIB}


def test_the_default_bounds_are_a_sidecars_not_a_servers(tmp_path: Path) -> None:
    seen = engine_settings({"url": f"chdb://{tmp_path}/ch"})
    assert seen["max_server_memory_usage"] == 1024 * MIB
    assert seen["mark_cache_size"] == seen["primary_index_cache_size"] == 64 * MIB


def test_zero_keeps_chdbs_own_default(tmp_path: Path) -> None:
    seen = engine_settings({"url": f"chdb://{tmp_path}/ch", "embedded_max_memory_mb": 0, "embedded_cache_mb": 0})
    assert seen["mark_cache_size"] > 64 * MIB  # chDB's own: a share of the machine's RAM
    assert seen["max_server_memory_usage"] > 1024 * MIB
