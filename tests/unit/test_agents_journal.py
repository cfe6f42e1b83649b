"""The emitter's journal on a real directory: what a killed process leaves is read back whole, and a
segment goes only when the broker acknowledged all of it and the sink committed past it."""

from __future__ import annotations

import stat
from pathlib import Path

from streams.agents.journal import Journal

STORED = ("router.traces", "router.decisions")


def item(i: int, topic: str = "router.traces") -> tuple[str, bytes | None, bytes]:
    return topic, f"s{i % 3}".encode(), f"event-{i}".encode() * 10


def test_a_killed_process_leaves_every_appended_event_to_the_next_one(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j", stored_topics=STORED, segment_bytes=300)
    events = [item(i) for i in range(20)]
    for e in events:
        first.append(e)
    # No close(): the process died. A torn last record (died mid-write) is cut off.
    last = sorted((tmp_path / "j").glob("*.log"))[-1]
    with last.open("ab") as f:
        f.write(b"\x00\x0d\x00")
    again = Journal(tmp_path / "j", stored_topics=STORED, segment_bytes=300)
    assert again.recover() == events
    assert len(again.segments) > 1  # rotated by size
    again.append(item(99))  # new events follow in a new segment
    assert Journal(tmp_path / "j", stored_topics=STORED).recover() == [*events, item(99)]


def test_files_are_private(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", stored_topics=STORED)
    j.append(item(1))
    [seg] = (tmp_path / "j").glob("*.log")
    assert stat.S_IMODE(seg.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700


def test_a_segment_goes_only_after_acknowledgement_and_the_sinks_commit(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", stored_topics=STORED, segment_bytes=1 << 20, segment_age_s=0.0)
    for i in range(4):
        j.append(item(i))
    j.append(item(4, "router.policy"))  # not stored by the sink: its offset does not hold anything up
    assert not j.removable()
    j.acknowledge(3, {("router.traces", 0): 2})
    assert not j.removable(), "two events are not acknowledged yet"
    j.acknowledge(2, {("router.traces", 0): 3, ("router.traces", 1): 7, ("router.policy", 0): 40})
    assert j.removable()
    assert j.awaiting() == [("router.traces", 0), ("router.traces", 1)]
    assert j.trim({("router.traces", 0): 4, ("router.traces", 1): 7}) == 0, "offset 7 not committed yet"
    assert j.trim({("router.traces", 0): 4, ("router.traces", 1): None}) == 0
    assert j.trim({("router.traces", 0): 4, ("router.traces", 1): 8}) == 1
    assert list((tmp_path / "j").glob("*.log")) == []
    j.append(item(5))  # the next event opens a new segment
    assert j.pending_events() == 1
    assert Journal(tmp_path / "j", stored_topics=STORED).recover() == [item(5)]


def test_an_open_segment_waits_for_its_age_before_it_can_go(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", stored_topics=STORED, segment_age_s=3600)
    j.append(item(1))
    j.acknowledge(1, {})
    assert not j.removable(), "still the segment being written"
    j.segment_age_s = 0.0
    j.acknowledge(0, {})  # the emitter's periodic tick
    assert j.removable()
    assert j.trim({}) == 1
