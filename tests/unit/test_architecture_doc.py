"""docs/architecture.md names real code: every `streams.module:Name[.attr]` in it imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
REF = re.compile(r"`(streams(?:\.\w+)+):(\w+(?:\.\w+)*)`")


def test_every_named_function_exists() -> None:
    refs = REF.findall(DOC.read_text())
    assert len(refs) >= 20, "the hop lists name the code they pass through"
    missing = []
    for module_name, qualname in refs:
        obj: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(f"{module_name}:{qualname}")
                break
        else:
            assert callable(obj), f"{module_name}:{qualname} is not a function or class"
    assert not missing, f"docs/architecture.md names code that does not exist: {missing}"
