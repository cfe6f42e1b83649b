"""Each package's public surface (``__all__`` in its ``__init__``) resolves, and every module of
``streams`` imports on its own, first (no import cycle hides behind the order the tests import in)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import streams

SCRIPT = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "streams" or m.startswith("streams.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(streams.__path__, "streams."))


def test_every_exported_name_resolves() -> None:
    packages = [name for name in modules() if hasattr(importlib.import_module(name), "__path__")]
    exported = 0
    for name in packages:
        package = importlib.import_module(name)
        for attr in getattr(package, "__all__", ()):
            assert getattr(package, attr, None) is not None, f"{name}.{attr}"
            exported += 1
    assert exported >= 50


def test_every_module_imports_first_and_alone() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, *modules()], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
