"""Files shipped inside the package (Avro schemas, ClickHouse migrations), found the same way in a
source checkout, an editable install and an installed wheel: through ``importlib.resources``, never
through paths relative to the source tree."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def package_folder(package: str, folder: str) -> Traversable:
    return resources.files(package) / folder


def files_ending(directory: Traversable, suffix: str) -> list[Traversable]:
    """The files in ``directory`` whose names end with ``suffix``, sorted by name; none if it is missing."""
    if not directory.is_dir():
        return []
    return sorted((f for f in directory.iterdir() if f.is_file() and f.name.endswith(suffix)), key=lambda f: f.name)
