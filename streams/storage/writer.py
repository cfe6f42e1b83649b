"""Batched, idempotent writes of events into ClickHouse: the one base every sink shares.

- Batches are bounded by size (``batch_size`` rows over all tables) and time (``flush_interval_s``
  since the oldest pending row); the caller asks ``due()`` and then awaits ``flush()``.
- Idempotent: the tables are ReplacingMergeTree ordered by ``event_id`` (readers use ``FINAL``), and a
  bounded set of recently written ids drops most redeliveries before they cost an insert.
- clickhouse-connect is synchronous (and chDB runs in-process), so inserts run in a thread.
- A failed insert is told apart from rejected rows: the batch is bisected down to single rows; a row
  that still fails while ``SELECT 1`` succeeds is rejected (returned with the reason, the caller
  dead-letters it), otherwise ClickHouse is unavailable and ``flush`` raises ``StorageUnavailable``
  with every pending row kept for the retry.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

# Event record name -> ClickHouse table.
TABLES: dict[str, str] = {
    "Trace": "traces",
    "Decision": "decisions",
    "Outcome": "outcomes",
    "DeadLetter": "dead_letters",
}


class StorageUnavailable(Exception):
    """ClickHouse could not be reached or refused the whole batch; retry later, nothing was lost."""


@dataclass(slots=True)
class Rejected:
    """One event ClickHouse would not store, and why."""

    table: str
    event: dict[str, Any]
    reason: str


@dataclass(slots=True)
class Batch:
    """Rows taken out of a writer: per table, (event, row) pairs."""

    tables: dict[str, list[tuple[dict[str, Any], Sequence[Any]]]]
    count: int


@dataclass(slots=True)
class FlushResult:
    written: int = 0
    rejected: list[Rejected] = field(default_factory=list)


Converter = Callable[[Mapping[str, Any]], Any]


def _column_converter(name: str, ch_type: str) -> Converter:
    """How one column's value comes out of an event dict (schema names, ``ts`` from ``ts_ms``)."""
    if name == "ts":
        # DateTime64(3) takes the raw millisecond ticks: 3x cheaper than building datetime objects.
        return lambda e: int(e.get("ts_ms") or 0)
    nullable = ch_type.startswith("Nullable(")
    if nullable:
        return lambda e: e.get(name)
    inner = ch_type.removeprefix("LowCardinality(")
    if inner.startswith("Map("):
        return lambda e: e.get(name) or {}
    if inner.startswith("Array("):
        return lambda e: e.get(name) or []
    if inner.startswith(("String", "FixedString")):
        return lambda e: "" if e.get(name) is None else e[name]
    if inner.startswith("Bool"):
        return lambda e: bool(e.get(name))
    if inner.startswith(("Float", "Decimal")):
        return lambda e: float(e.get(name) or 0.0)
    if inner.startswith(("UInt", "Int")):
        return lambda e: int(e.get(name) or 0)
    return lambda e: e.get(name)


@dataclass(slots=True)
class TableLayout:
    table: str
    columns: list[str]
    converters: list[Converter]
    # Events decoded from Avro carry every schema field with its schema type: one C-level getter
    # builds the row (7x cheaper than the per-column converters, which also repair loose dicts).
    getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None

    def row(self, event: Mapping[str, Any]) -> list[Any]:
        return [conv(event) for conv in self.converters]

    def fast_row(self, event: Mapping[str, Any]) -> Sequence[Any]:
        if self.getter is None:
            self.getter = itemgetter(*["ts_ms" if c == "ts" else c for c in self.columns])  # type: ignore[assignment]
        try:
            return self.getter(event)  # type: ignore[misc]
        except KeyError:
            return self.row(event)


def describe_tables(client: Any, tables: Iterable[str]) -> dict[str, TableLayout]:
    """Column names and types from ``system.columns`` (the migrations are the source of truth)."""
    wanted = list(tables)
    result = client.query(
        "SELECT table, name, type FROM system.columns "
        "WHERE database = currentDatabase() AND table IN {tables:Array(String)} ORDER BY table, position",
        parameters={"tables": wanted},
    )
    layouts: dict[str, TableLayout] = {}
    for table, name, ch_type in result.result_rows:
        layout = layouts.setdefault(table, TableLayout(table, [], []))
        layout.columns.append(name)
        layout.converters.append(_column_converter(name, ch_type))
    missing = [t for t in wanted if t not in layouts]
    if missing:
        raise LookupError(f"ClickHouse tables missing (run the migrations): {', '.join(missing)}")
    return layouts


class RecentIds:
    """A bounded insertion-ordered set: the last ``capacity`` ids written."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add_all(self, ids: Iterable[str]) -> None:
        if self.capacity <= 0:
            return
        store = self._ids
        for event_id in ids:
            store[event_id] = None
        while len(store) > self.capacity:
            store.popitem(last=False)


class BatchWriter:
    """Collects events per table and writes them in bounded batches; see the module docstring.

    ``client`` is a clickhouse-connect client (HTTP server or chDB). Not thread-safe: one owner task.
    """

    def __init__(
        self,
        client: Any,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 0.5,
        recent_ids: int = 200_000,
        tables: Mapping[str, str] = TABLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.record_tables = dict(tables)
        self.clock = clock
        self.recent = RecentIds(recent_ids)
        self.layouts: dict[str, TableLayout] = {}
        self._pending: dict[str, list[tuple[dict[str, Any], Sequence[Any]]]] = {}
        self._pending_ids: set[str] = set()
        self._count = 0
        self._oldest: float | None = None
        self.written_total = 0
        self.duplicates_skipped = 0

    def prepare(self) -> None:
        """Read the table layouts once (sync: call it in a thread, or before the loop is busy)."""
        self.layouts = describe_tables(self.client, sorted(set(self.record_tables.values())))

    async def start(self) -> None:
        await asyncio.to_thread(self.prepare)

    # --- buffering -------------------------------------------------------------------------------

    def table_for(self, record_name: str) -> str | None:
        return self.record_tables.get(record_name)

    def add(self, record_name: str, event: dict[str, Any], *, conformant: bool = False) -> bool:
        """Queue one event; False when it is a known duplicate (or has no table).

        ``conformant``: the event was decoded from its Avro schema (every field present and typed), so
        its row is built by the fast path.
        """
        table = self.record_tables.get(record_name)
        if table is None:
            return False
        event_id = event.get("event_id")
        if event_id in self.recent or event_id in self._pending_ids:
            self.duplicates_skipped += 1
            return False
        if not self.layouts:
            self.prepare()
        layout = self.layouts[table]
        row = layout.fast_row(event) if conformant else layout.row(event)
        if event_id:
            self._pending_ids.add(event_id)
        self._pending.setdefault(table, []).append((event, row))
        self._count += 1
        if self._oldest is None:
            self._oldest = self.clock()
        return True

    def __len__(self) -> int:
        return self._count

    def due(self) -> bool:
        if self._count == 0:
            return False
        if self._count >= self.batch_size:
            return True
        return self._oldest is not None and self.clock() - self._oldest >= self.flush_interval_s

    def time_to_due(self) -> float:
        """Seconds until the time bound makes the pending batch due (the flush interval when empty)."""
        if self._oldest is None:
            return self.flush_interval_s
        return max(0.0, self.flush_interval_s - (self.clock() - self._oldest))

    def clear(self) -> None:
        """Forget pending rows (their offsets were not committed: they will be read again)."""
        self._pending = {}
        self._pending_ids = set()
        self._count = 0
        self._oldest = None

    # --- writing ----------------------------------------------------------------------------------

    def take(self) -> Batch:
        """Detach the pending rows as a batch; new rows start the next one (pipelined writers)."""
        batch = Batch(self._pending, self._count)
        self.clear()
        return batch

    async def write(self, batch: Batch) -> FlushResult:
        """Insert a taken batch; raise ``StorageUnavailable`` when ClickHouse is down (retry the same
        batch: tables already written are written again and collapse by ``event_id``)."""
        if not self.layouts:
            await self.start()
        result = await asyncio.to_thread(self._write_all, batch.tables)
        for rows in batch.tables.values():
            self.recent.add_all(e["event_id"] for e, _ in rows if e.get("event_id"))
        self.written_total += result.written
        return result

    async def flush(self) -> FlushResult:
        """Write every pending row; raise ``StorageUnavailable`` (rows kept) when ClickHouse is down."""
        if not self._count:
            return FlushResult()
        pending, ids, oldest = self._pending, self._pending_ids, self._oldest
        batch = self.take()
        try:
            return await self.write(batch)
        except BaseException:
            # Put the batch back in front of rows added meanwhile.
            for table, rows in self._pending.items():
                pending.setdefault(table, []).extend(rows)
            self._pending, self._pending_ids = pending, ids | self._pending_ids
            self._count = sum(len(v) for v in pending.values())
            self._oldest = oldest if oldest is not None else self._oldest
            raise

    def _write_all(self, tables: Mapping[str, list[tuple[dict[str, Any], Sequence[Any]]]]) -> FlushResult:
        result = FlushResult()
        for table, rows in tables.items():
            if rows:
                self._write_table(table, rows, result)
        return result

    def _write_table(self, table: str, rows: Sequence[tuple[dict[str, Any], Sequence[Any]]],
                     result: FlushResult) -> None:
        layout = self.layouts[table]
        try:
            # Column-oriented: zip transposes in C, and the driver skips its own transpose.
            columns = list(zip(*(r for _, r in rows), strict=True))
            self.client.insert(table, columns, column_names=layout.columns, column_oriented=True)
            result.written += len(rows)
            return
        except Exception as exc:  # clickhouse-connect raises several types; classified below
            error = exc
        if not self._alive():
            raise StorageUnavailable(f"ClickHouse unavailable: {type(error).__name__}: {error}") from error
        if len(rows) == 1:
            result.rejected.append(Rejected(table, rows[0][0], f"{type(error).__name__}: {_short(error)}"))
            return
        mid = len(rows) // 2
        self._write_table(table, rows[:mid], result)
        self._write_table(table, rows[mid:], result)

    def _alive(self) -> bool:
        try:
            self.client.command("SELECT 1")
            return True
        except Exception:
            return False


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first[:limit]


__all__ = [
    "TABLES",
    "Batch",
    "BatchWriter",
    "FlushResult",
    "RecentIds",
    "Rejected",
    "StorageUnavailable",
    "TableLayout",
    "describe_tables",
]
