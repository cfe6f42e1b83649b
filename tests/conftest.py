"""Project-wide test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._support import missing

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI lays a copy there), else the workplace copy."""
    for candidate in (os.environ.get("WEAVE_SHARED_DIR"), ROOT.parent / "shared", Path("/work/shared")):
        if candidate and Path(candidate, "data").is_dir():
            return Path(candidate)
    missing("shared evaluation data not available (CI lays it in ../shared)")


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one chDB data dir of this test process (per xdist worker).

    chDB runs one engine per process, bound to the first data dir opened; every test that needs the
    engine takes this fixture and works in a fresh database of its own.
    """
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"
