"""A local, append-only queue file for events the broker could not take, replayed in order later.

Record layout: ``>HHI`` (topic length, key length or 0xFFFF for no key, value length), then topic,
key and value bytes. The read position lives in a sidecar file, replaced atomically after each
replayed chunk, so a process that dies mid-replay resumes where it stopped (at worst re-sending one
chunk: the consumers dedup by event id). Writes are flushed to the OS on every append (they survive a
crash of this process; fsync per append would cost more than the events are worth).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_HEADER = struct.Struct(">HHI")
_NO_KEY = 0xFFFF

Item = tuple[str, bytes | None, bytes]


def pack(items: list[Item]) -> bytes:
    """``items`` in the record layout above, ready for one write."""
    parts: list[bytes] = []
    for topic, key, value in items:
        t = topic.encode()
        parts.append(_HEADER.pack(len(t), _NO_KEY if key is None else len(key), len(value)))
        parts.append(t)
        if key is not None:
            parts.append(key)
        parts.append(value)
    return b"".join(parts)


def whole_length(path: Path) -> int:
    """Length of the whole records at the start of ``path`` (a torn last one is left out)."""
    end = path.stat().st_size
    good = 0
    with open(path, "rb") as f:
        while good + _HEADER.size <= end:
            f.seek(good)
            tlen, klen, vlen = _HEADER.unpack(f.read(_HEADER.size))
            need = _HEADER.size + tlen + (0 if klen == _NO_KEY else klen) + vlen
            if good + need > end:
                break
            good += need
    return good


def read_records(path: Path, start: int, end: int, max_items: int) -> list[tuple[Item, int]]:
    """Up to ``max_items`` whole records of ``path`` between ``start`` and ``end``, each with the
    position after it."""
    out: list[tuple[Item, int]] = []
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while len(out) < max_items and pos + _HEADER.size <= end:
            tlen, klen, vlen = _HEADER.unpack(f.read(_HEADER.size))
            need = tlen + (0 if klen == _NO_KEY else klen) + vlen
            if pos + _HEADER.size + need > end:
                break  # a torn tail write (crash mid-append): stop here
            topic = f.read(tlen).decode()
            key = None if klen == _NO_KEY else f.read(klen)
            value = f.read(vlen)
            pos += _HEADER.size + need
            out.append(((topic, key, value), pos))
    return out


class SpillFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.pos_path = self.path.with_name(self.path.name + ".pos")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._repair()
        # Held open for the sink's lifetime; 0600: spilled events carry request metadata.
        self._out = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self.read_pos = self._load_pos()
        self.appended = 0
        self.replayed = 0

    def _repair(self) -> None:
        """Cut a torn last record (the process died mid-append) so new records follow whole ones."""
        if not self.path.exists():
            return
        good = whole_length(self.path)
        if good < self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def _load_pos(self) -> int:
        try:
            pos = int(self.pos_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
        return min(pos, self.size())

    def size(self) -> int:
        return self._out.tell() if not self._out.closed else self.path.stat().st_size

    @property
    def pending(self) -> bool:
        return self.read_pos < self.size()

    def pending_bytes(self) -> int:
        return max(0, self.size() - self.read_pos)

    def append_many(self, items: list[Item]) -> None:
        if not items:
            return
        self._out.write(pack(items))
        self._out.flush()
        self.appended += len(items)

    def read(self, max_items: int) -> list[tuple[Item, int]]:
        """Up to ``max_items`` records from the read position, each with the position after it."""
        end = self.size()
        if self.read_pos >= end:
            return []
        return read_records(self.path, self.read_pos, end, max_items)

    def commit(self, pos: int) -> None:
        """Everything before ``pos`` reached the broker; start over when the whole file did."""
        self.read_pos = pos
        if pos >= self.size():
            self.reset()
            return
        tmp = self.pos_path.with_name(self.pos_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the service's files are its own
        with os.fdopen(fd, "w") as f:
            f.write(str(pos))
        os.replace(tmp, self.pos_path)

    def reset(self) -> None:
        self._out.truncate(0)
        self._out.seek(0)
        self.read_pos = 0
        self.pos_path.unlink(missing_ok=True)

    def close(self) -> None:
        if not self._out.closed:
            self._out.close()
