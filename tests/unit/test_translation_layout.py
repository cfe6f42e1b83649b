"""The dialect packages keep their shape: the same modules, a ``CODEC`` per dialect, no dialect
importing another (shared helpers live in ``streams.translation.common``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from streams.translation.codec import DialectCodec
from streams.translation.registry import DIALECTS, get

TRANSLATION = Path(__file__).resolve().parents[2] / "streams" / "translation"
MODULES = ("request", "response", "stream", "usage", "relay")


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_package_shape(dialect: str) -> None:
    package = importlib.import_module(f"streams.translation.{dialect}")
    assert isinstance(package.CODEC, DialectCodec) and package.CODEC.dialect == dialect
    assert get(dialect) is package.CODEC
    for name in MODULES:
        assert (TRANSLATION / dialect / f"{name}.py").is_file(), f"{dialect}/{name}.py"
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert not missing, f"{dialect}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_no_dialect_imports_another(dialect: str) -> None:
    others = {f"streams.translation.{d}" for d in DIALECTS if d != dialect}
    for path in (TRANSLATION / dialect).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
                hits = {m for m in imported for o in others if m == o or m.startswith(o + ".")}
                assert not hits, f"{path.name} imports {hits}"
