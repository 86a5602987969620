"""The durable outbox: a notification is written to SQLite before it is sent."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_receiver ON outbox (receiver, id);
"""
MAX_BACKOFF = 300.0


class Item(NamedTuple):
    """One queued notification."""

    id: int
    receiver: str
    key: str
    payload: dict[str, Any]
    attempts: int
    next_at: float


def backoff(attempts: int, rng: random.Random = random.Random()) -> float:  # noqa: B008
    """Seconds before the next try: exponential from 1 s, capped at 5 min, with jitter."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.5)


class Outbox:
    """SQLite in WAL mode; one connection per thread; ordered per receiver."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.wakeup = threading.Condition()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an enqueued notification survives a crash
            self._local.db = db
        return db

    def put(self, receiver: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue a notification; False if one with the same key is already queued."""
        now = time.time()
        cur = self._db().execute(
            "INSERT OR IGNORE INTO outbox (receiver, key, payload, created, next_at)"
            " VALUES (?, ?, ?, ?, ?)", (receiver, key, json.dumps(payload), now, now))  # fmt: skip
        with self.wakeup:
            self.wakeup.notify_all()
        return cur.rowcount == 1

    def head(self, receiver: str) -> Item | None:
        """Return the oldest notification of a receiver (order per receiver is kept)."""
        row = self._db().execute(
            "SELECT id, receiver, key, payload, attempts, next_at FROM outbox"
            " WHERE receiver = ? ORDER BY id LIMIT 1", (receiver,)).fetchone()  # fmt: skip
        if row is None:
            return None
        return Item(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def done(self, item: Item) -> None:
        """Remove a delivered notification."""
        self._db().execute("DELETE FROM outbox WHERE id = ?", (item.id,))

    def failed(self, item: Item, error: str) -> float:
        """Record a failed try; return when the next one is due."""
        due = time.time() + backoff(item.attempts + 1)
        self._db().execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
            (due, error[:500], item.id))  # fmt: skip
        return due

    def items(self, limit: int) -> list[dict[str, Any]]:
        """Return the queue, oldest first, for the admin API."""
        rows = self._db().execute(
            "SELECT receiver, key, payload, created, attempts, next_at, last_error FROM outbox"
            " ORDER BY id LIMIT ?", (limit,)).fetchall()  # fmt: skip
        keys = ("receiver", "key", "payload", "created", "attempts", "next_at", "last_error")
        return [{**dict(zip(keys, r, strict=True)), "payload": json.loads(r[2])} for r in rows]

    def stats(self) -> dict[str, tuple[int, float]]:
        """Return per receiver: pending count and the oldest pending age in seconds."""
        now = time.time()
        rows = (
            self._db()
            .execute("SELECT receiver, COUNT(*), MIN(created) FROM outbox GROUP BY receiver")
            .fetchall()
        )
        return {r[0]: (int(r[1]), now - float(r[2])) for r in rows}
