"""The durable outbox: a notification is written to SQLite before it is sent."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from agent.files import set_aside
from agent.secrets import SECRETS

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
CREATE TABLE IF NOT EXISTS nflog (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated REAL NOT NULL
);
"""
INSERT = ("INSERT OR IGNORE INTO outbox (receiver, key, payload, created, next_at)"
          " VALUES (?, ?, ?, ?, ?)")  # fmt: skip
UPSERT = (
    INSERT.replace("OR IGNORE ", "") + " ON CONFLICT (key) DO UPDATE SET"
    " payload = excluded.payload, created = excluded.created"
)  # keeps its place and backoff
COLUMNS = "id, receiver, key, payload, attempts, next_at, created"
LOG = "INSERT OR REPLACE INTO nflog (key, state, updated) VALUES (?, ?, ?)"
MAX_BACKOFF = 300.0

log = logging.getLogger(__name__)


class OutboxWriteError(Exception):
    """A write to the outbox failed (disk full, I/O error, locked): none of it landed."""


class Item(NamedTuple):
    """One queued notification."""

    id: int
    receiver: str
    key: str
    payload: dict[str, Any]
    attempts: int
    next_at: float
    created: float  # when queued; for a coalesced alert, when last updated


def backoff(attempts: int, rng: random.Random = random.Random()) -> float:  # noqa: B008
    """Seconds before the next try: exponential from 1 s, capped at 5 min, with jitter."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.5)


class Outbox:
    """SQLite in WAL mode; one connection per thread; ordered per receiver.

    Beside the queue, the notification log (as Alertmanager's nflog): what each aggregation
    group last sent, so neither a reload nor a restart sends it again or forgets a resolve.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.wakeup = threading.Condition()
        self.generation = 0  # bumped on every put: a sender waits for it to move
        self.write_failures = 0  # writes that failed and were rolled back
        self._failing = False  # said once per run of failures, and once when writes work again
        self._count = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db().executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:  # not a database (or one damaged past reading)
            self._start_over(exc)

    def close_thread(self) -> None:
        """Close the calling thread's connection (a thread that ends must, or its fds stay)."""
        db = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            db.close()

    def _start_over(self, error: sqlite3.DatabaseError) -> None:
        """Move a damaged database aside (with its WAL) and start an empty one."""
        self.close_thread()
        Path(f"{self.path}-shm").unlink(missing_ok=True)  # an index of the WAL, rebuilt
        dest = set_aside(self.path, error, "starting an empty outbox: what was queued in it is "
                         "lost, and a group may notify once more")  # fmt: skip
        wal = Path(f"{self.path}-wal")
        if dest is not None and wal.exists():
            os.replace(wal, f"{dest}-wal")
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # an enqueued notification survives a crash
            except sqlite3.Error:
                db.close()
                raise
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction: all of it lands, or none.

        A failed write is rolled back, counted, logged (once until writes work again) and
        raised as OutboxWriteError: the caller keeps what it meant to write and tries again.
        """
        db = self._db()
        before = db.total_changes
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have ended it
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            self._wrote(exc)
            raise OutboxWriteError(f"{self.path}: {exc}") from exc
        if db.total_changes > before:  # one that wrote nothing says nothing of the disk
            self._wrote(None)

    def _wrote(self, error: BaseException | None) -> None:
        """Count a failed write; say when failures start and when they stop."""
        with self._count:
            was, self._failing = self._failing, error is not None
            if error is not None:
                self.write_failures += 1
        if error is not None and not was:
            log.error("outbox %s: write failed (%s); what was to be written is kept and "
                      "tried again", self.path, error)  # fmt: skip
        elif error is None and was:
            log.warning("outbox %s: writes succeed again", self.path)

    def put(self, receiver: str, key: str, payload: dict[str, Any]) -> bool:
        """Queue a notification; False if one with the same key is already queued."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(INSERT, (receiver, key, json.dumps(payload), now, now))
        self.wake()
        return cur.rowcount == 1

    def commit(self, items: Sequence[tuple[str, str, dict[str, Any]]],
               groups: Mapping[str, dict[str, Any] | None]) -> None:  # fmt: skip
        """Queue notifications and record what their groups sent, in one transaction.

        After a crash both are there or neither: a change of a group is never queued twice,
        nor taken as sent when it was not queued. A group of None is deleted.
        """
        now = time.time()
        with self._transaction() as db:
            db.executemany(INSERT, [(r, k, json.dumps(p), now, now) for r, k, p in items])
            for key, state in groups.items():
                if state is None:
                    db.execute("DELETE FROM nflog WHERE key = ?", (key,))
                else:
                    db.execute(LOG, (key, json.dumps(state), now))
        if items:
            self.wake()

    def load_groups(self) -> dict[str, dict[str, Any]]:
        """Return the notification log: every group's last-sent state, by group key."""
        rows = self._db().execute("SELECT key, state FROM nflog").fetchall()
        out: dict[str, dict[str, Any]] = {}
        for key, state in rows:
            try:
                parsed = json.loads(state)
            except ValueError:
                parsed = None
            out[key] = parsed if isinstance(parsed, dict) else {}  # {}: damaged, as the reader sees
        return out

    def wake(self) -> None:
        """Wake every waiting sender (something was queued, or they are asked to stop)."""
        with self.wakeup:
            self.generation += 1
            self.wakeup.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep until something is put after generation `seen`, or `timeout` passes."""
        with self.wakeup:
            self.wakeup.wait_for(lambda: self.generation != seen, timeout)

    def upsert(self, rows: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Queue or replace (receiver, key, payload) rows: one row per key, the latest payload."""
        if not rows:
            return
        now = time.time()
        with self._transaction() as db:
            db.executemany(UPSERT, [(r, k, json.dumps(p), now, now) for r, k, p in rows])
        self.wake()

    def head(self, receiver: str) -> Item | None:
        """Return the oldest notification of a receiver (order per receiver is kept)."""
        batch = self.batch(receiver, 1)
        return batch[0] if batch else None

    def batch(self, receiver: str, limit: int) -> list[Item]:
        """Return up to `limit` of a receiver's notifications, oldest first."""
        rows = self._db().execute(
            f"SELECT {COLUMNS} FROM outbox WHERE receiver = ? ORDER BY id LIMIT ?",
            (receiver, limit)).fetchall()  # fmt: skip
        items = []
        for r in rows:
            try:
                payload = json.loads(r[3])
            except ValueError as exc:  # a damaged row would stop its receiver for good
                self._drop(r[0], r[2], receiver, exc)
                continue
            items.append(Item(r[0], r[1], r[2], payload, r[4], r[5], r[6]))
        if len(items) < len(rows):  # some were dropped: the rows after them come next
            return self.batch(receiver, limit)
        return items

    def _drop(self, row: int, key: str, receiver: str, error: Exception) -> None:
        """Delete a row whose payload cannot be read, saying which."""
        log.error("outbox: notification %s for %s is damaged (%s): dropped", key, receiver, error)
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (row,))

    def done(self, item: Item) -> None:
        """Remove a delivered notification, unless it was replaced while it was being sent."""
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ? AND created = ?", (item.id, item.created))

    def failed(self, item: Item, error: str, now: float) -> float:
        """Record a failed try at `now`; return when the next one is due."""
        due = now + backoff(item.attempts + 1)
        with self._transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ?"
                       " WHERE id = ?", (due, SECRETS.redact(error)[:500], item.id))  # fmt: skip
        return due

    def trim(self, receiver: str, keep: int, max_age: float, now: float) -> tuple[int, int]:
        """Drop what is older than max_age, then the oldest past `keep`: (expired, overflowed)."""
        with self._transaction() as db:
            expired = db.execute("DELETE FROM outbox WHERE receiver = ? AND created < ?",
                                 (receiver, now - max_age)).rowcount  # fmt: skip
            overflow = db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE receiver = ?"
                " ORDER BY id DESC LIMIT -1 OFFSET ?)", (receiver, keep)).rowcount  # fmt: skip
        return expired, overflow

    def forget(self, keep: set[str]) -> dict[str, int]:
        """Delete the notifications of every receiver not in `keep`; return how many each had."""
        with self._transaction() as db:
            rows = db.execute("SELECT receiver, COUNT(*) FROM outbox GROUP BY receiver").fetchall()
            gone = {receiver: int(count) for receiver, count in rows if receiver not in keep}
            db.executemany("DELETE FROM outbox WHERE receiver = ?", [(r,) for r in gone])
        return gone

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
