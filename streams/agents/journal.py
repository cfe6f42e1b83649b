"""The emitter's write-ahead journal: every accepted event is on local disk before its answer completes.

An event handed to the gateway's event producer is written (encoded, one ``write`` per event, no
fsync: it must outlive this process, not the machine) to the current segment file under
``data_dir/journal/<name>/``. A segment is deleted once

1. every event in it was acknowledged by the broker (counted in the order they were accepted), and
2. the sink's consumer group has committed past the highest offset the broker had acknowledged by then,
   on every partition of the topics the sink stores (so the rows are in ClickHouse).

After a crash the segments still on disk are read back and produced again, oldest first; their event
ids are the ones the first attempt used, so ClickHouse (ReplacingMergeTree on ``event_id``) keeps one
row each. The record layout is the spill file's (``streams.agents.spill``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from streams.agents.spill import Item, pack, read_records, whole_length

log = logging.getLogger("weave.journal")

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> highest acknowledged offset


@dataclass
class Segment:
    path: Path
    first: int  # sequence number of its first event
    end: int  # one past its last event
    opened: float = field(default_factory=time.monotonic)
    # Offsets the sink must commit past before this segment may go; None until fully acknowledged.
    needs: Offsets | None = None


class Journal:
    """Append, acknowledge in order, trim what the sink has stored; ``recover`` what a crash left."""

    def __init__(self, directory: str | os.PathLike[str], *, stored_topics: Iterable[str],
                 segment_bytes: int = 8 << 20, segment_age_s: float = 5.0) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.stored_topics = frozenset(stored_topics)
        self.segment_bytes = segment_bytes
        self.segment_age_s = segment_age_s
        self.segments: list[Segment] = []
        self.seq = 0  # events appended so far (this run and what was recovered)
        self.acked = 0  # the first ``acked`` events are acknowledged by the broker
        self._fd: int | None = None
        self._size = 0
        self._next_name = 0
        self.deleted = 0

    # --- start-up ------------------------------------------------------------------------------

    def recover(self) -> list[Item]:
        """Events of the segments a previous run left (oldest first); they stay until stored again."""
        items: list[Item] = []
        for path in sorted(self.dir.glob("*.log")):
            with contextlib.suppress(ValueError):
                self._next_name = max(self._next_name, int(path.stem) + 1)
            good = whole_length(path)
            records = [item for item, _ in read_records(path, 0, good, 1 << 62)]
            if not records:
                path.unlink(missing_ok=True)
                continue
            self.segments.append(Segment(path, self.seq, self.seq + len(records)))
            self.seq += len(records)
            items.extend(records)
        if items:
            log.warning("journal: %d events from %d segments of a previous run will be sent again",
                        len(items), len(self.segments))
        return items

    # --- the request path ----------------------------------------------------------------------

    def append(self, item: Item) -> None:
        if self._fd is None or self._size >= self.segment_bytes:
            self._open_segment()
        data = pack([item])
        assert self._fd is not None
        os.write(self._fd, data)
        self._size += len(data)
        self.seq += 1
        self.segments[-1].end = self.seq

    def _open_segment(self) -> None:
        self._close_fd()
        path = self.dir / f"{self._next_name:012d}.log"
        self._next_name += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        self.segments.append(Segment(path, self.seq, self.seq))

    # --- acknowledgements and trimming -----------------------------------------------------------

    def acknowledge(self, count: int, offsets: Offsets) -> None:
        """The next ``count`` events (in append order) reached the broker; ``offsets`` is the highest
        offset acknowledged so far per partition. ``count=0`` only closes a fully acknowledged
        segment that is due (call it now and then when traffic stops)."""
        self.acked = min(self.seq, self.acked + max(0, count))
        needs: Offsets | None = None
        for seg in self.segments:
            if seg.needs is not None:
                continue
            if seg.end > self.acked or (seg is self._current() and not self._rotate_due(seg)):
                break
            if needs is None:
                needs = {tp: off for tp, off in offsets.items() if tp[0] in self.stored_topics}
            seg.needs = needs
            if seg is self._current():
                self._close_fd()  # full or old: the next event opens a new segment

    def _current(self) -> Segment | None:
        return self.segments[-1] if self.segments and self._fd is not None else None

    def _rotate_due(self, seg: Segment) -> bool:
        return self._size >= self.segment_bytes or time.monotonic() - seg.opened >= self.segment_age_s

    def awaiting(self) -> list[tuple[str, int]]:
        """Partitions whose committed offset decides whether an acknowledged segment may go."""
        tps: set[tuple[str, int]] = set()
        for seg in self.segments:
            if seg.needs is None:
                break
            tps.update(seg.needs)
        return sorted(tps)

    def removable(self) -> bool:
        return bool(self.segments) and self.segments[0].needs is not None

    def trim(self, committed: dict[tuple[str, int], int | None]) -> int:
        """Delete the oldest segments whose events the sink has committed; how many were deleted."""
        gone = 0
        while self.segments and self.segments[0].needs is not None:
            seg = self.segments[0]
            assert seg.needs is not None
            if any((committed.get(tp) or 0) <= off for tp, off in seg.needs.items()):
                break
            seg.path.unlink(missing_ok=True)
            self.segments.pop(0)
            gone += 1
        self.deleted += gone
        return gone

    def broker_replaced(self) -> None:
        """The broker was started afresh after every group had read (and the sink stored) all it had:
        the offsets closed segments wait for belong to the old log, and what they hold is stored."""
        for seg in self.segments:
            if seg.needs is not None:
                seg.needs = {}

    def pending_events(self) -> int:
        return self.seq - (self.segments[0].first if self.segments else self.seq)

    def close(self) -> None:
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
