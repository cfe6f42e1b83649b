"""The store of Responses conversations: what each response id's conversation was.

One SQLite file, ``<data_dir>/responses.sqlite3``, so a chained turn (``previous_response_id``) and
``GET /v1/responses/{id}`` survive a restart and are shared by every gateway process on the data dir
(WAL mode; each call opens its own short-lived connection, so threads never share one). A row holds
the whole conversation before the response (the request's input items, earlier turns already
prepended) and the response object the caller got; the next turn's history is both together.

Bounded three ways (``responses:`` in the config): rows older than ``ttl_s`` are never returned and are
deleted on the next write; beyond ``max_entries`` rows or ``max_bytes`` of JSON the oldest go first
(down to 90% of the bound, so that a write rarely pays for an eviction).
Every row has an owner (the caller's key id): a key reads, chains and deletes only its own responses.

    store = ResponseStore(Path(settings.data_dir), settings.responses)
    await store.put("resp_1", "k1", [{"role": "user", "content": "hi"}], response)
    stored = await store.get("resp_1", "k1")     # None: unknown, expired or another key's
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from streams.config import ResponsesSettings

log = logging.getLogger(__name__)

FILE_NAME = "responses.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    bytes INTEGER NOT NULL,
    input BLOB NOT NULL,
    response BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at);
-- Running totals, so that a write checks the bounds without scanning the table.
CREATE TABLE IF NOT EXISTS totals (one INTEGER PRIMARY KEY CHECK (one = 1), entries INTEGER NOT NULL,
                                   bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS responses_added AFTER INSERT ON responses
BEGIN UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.bytes; END;
CREATE TRIGGER IF NOT EXISTS responses_removed AFTER DELETE ON responses
BEGIN UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.bytes; END;
CREATE TRIGGER IF NOT EXISTS responses_replaced AFTER UPDATE OF bytes ON responses
BEGIN UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes; END;
"""
# An eviction goes down to this share of a bound, so that it runs once in many writes, not on each.
EVICT_TO = 0.9
_encode = msgspec.json.encode
_decode = msgspec.json.decode


@dataclass(slots=True, frozen=True)
class StoredResponse:
    input: list[dict[str, Any]]  # the conversation before the response, as Responses input items
    response: dict[str, Any]  # the response object as the caller got it


class ResponseStore:
    def __init__(self, data_dir: Path, settings: ResponsesSettings) -> None:
        self.path = data_dir / FILE_NAME
        self.settings = settings
        self._ready = False  # the file and schema exist (made on first use: no file for a gateway without Responses)

    @property
    def enabled(self) -> bool:
        return self.settings.store

    async def put(self, rid: str, owner: str, input_items: list[dict[str, Any]], response: dict[str, Any]) -> bool:
        """Keep a response; False when it was not kept (disabled, larger than the whole store, disk error)."""
        if not self.enabled:
            return False
        input_json, response_json = _encode(input_items), _encode(response)
        size = len(input_json) + len(response_json)
        if size > self.settings.max_bytes:
            log.warning("response %s not stored: %d bytes exceed responses.max_bytes", rid, size)
            return False
        return await asyncio.to_thread(self._put, rid, owner, input_json, response_json, size)

    async def get(self, rid: str, owner: str) -> StoredResponse | None:
        """The stored conversation of ``rid`` when ``owner`` stored it and it has not expired."""
        if not self.enabled:
            return None
        row = await asyncio.to_thread(self._get, rid, owner)
        if row is None:
            return None
        return StoredResponse(_decode(row[0]), _decode(row[1]))

    async def delete(self, rid: str, owner: str) -> bool:
        """Forget ``rid``; False when there was nothing of ``owner``'s to forget."""
        if not self.enabled:
            return False
        return await asyncio.to_thread(self._delete, rid, owner)

    # Blocking parts, run in a worker thread -----------------------------------------------------

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Conversations are private: the file (and the WAL files SQLite makes like it) owner-only.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            if not self._ready:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._ready = True
            yield db
        finally:
            db.close()

    def _oldest_kept(self) -> float:
        return time.time() - self.settings.ttl_s

    def _put(self, rid: str, owner: str, input_json: bytes, response_json: bytes, size: int) -> bool:
        s = self.settings
        try:
            with self._db() as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM responses WHERE created_at < ?", (self._oldest_kept(),))
                # A replayed id of another owner is not theirs to overwrite.
                db.execute(
                    "INSERT INTO responses (id, owner, created_at, bytes, input, response) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, bytes = excluded.bytes,"
                    " input = excluded.input, response = excluded.response WHERE owner = excluded.owner",
                    (rid, owner, time.time(), size, input_json, response_json),
                )
                entries, total = db.execute("SELECT entries, bytes FROM totals").fetchone()
                if entries > s.max_entries or total > s.max_bytes:
                    self._evict(db, entries, total)
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("response %s not stored: %s", rid, exc)
            return False
        return True

    def _evict(self, db: sqlite3.Connection, entries: int, total: int) -> None:
        """Delete the oldest rows until both bounds hold with room to spare."""
        s = self.settings
        keep_entries, keep_bytes = int(s.max_entries * EVICT_TO), int(s.max_bytes * EVICT_TO)
        doomed: list[tuple[str]] = []
        for rid, size in db.execute("SELECT id, bytes FROM responses ORDER BY created_at, rowid"):
            if entries <= keep_entries and total <= keep_bytes:
                break
            doomed.append((rid,))
            entries, total = entries - 1, total - size
        db.executemany("DELETE FROM responses WHERE id = ?", doomed)

    def _get(self, rid: str, owner: str) -> tuple[bytes, bytes] | None:
        try:
            with self._db() as db:
                row = db.execute(
                    "SELECT input, response FROM responses WHERE id = ? AND owner = ? AND created_at >= ?",
                    (rid, owner, self._oldest_kept()),
                ).fetchone()
        except sqlite3.Error as exc:
            log.warning("response store unreadable: %s", exc)
            return None
        return (bytes(row[0]), bytes(row[1])) if row is not None else None

    def _delete(self, rid: str, owner: str) -> bool:
        try:
            with self._db() as db:
                cur = db.execute("DELETE FROM responses WHERE id = ? AND owner = ? AND created_at >= ?",
                                 (rid, owner, self._oldest_kept()))
        except sqlite3.Error as exc:
            log.warning("response store unwritable: %s", exc)
            return False
        return cur.rowcount > 0
