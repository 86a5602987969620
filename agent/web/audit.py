"""The admin API's audit log: each accepted call a line; refused ones counted, not each written.

A refused call (no or a bad token) is written when it is the first of its address and reason in
the minute; the others of that minute are one line with their count, written when the minute is
over. A flood of unauthenticated calls so costs a line a minute, not a line (and an fsync) each:
it cannot rotate an admin's entries away, nor flood Elasticsearch when the log is shipped.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from agent.files import JsonLinesLog, rfc3339
from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)

MAX_PATH = 256  # characters of a path kept: a request line may be 64 KiB
MAX_KEYS = 100  # addresses and reasons counted apart in a minute; the rest together, as "*"
KEEP = 5  # rotated files kept


def cap(path: str) -> str:
    """Cut a path to MAX_PATH characters, marking the cut."""
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "..."


class AuditLog:
    """audit.log under the state dir; thread-safe, no lock held across its writes."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.log = JsonLinesLog(path, max_bytes, keep=KEEP)
        self._minute = -1
        self._refused: dict[tuple[str, str], dict[str, Any]] = {}  # this minute's, by key
        self._failing = False
        self._lock = threading.Lock()

    def record(self, entry: dict[str, Any], now: float) -> None:
        """Audit one call: entry has who, role, method, path, status, remote and reason."""
        entry = {"@timestamp": rfc3339(now), **entry, "path": cap(str(entry["path"]))}
        with self._lock:
            lines = self._roll(int(now // 60))
            if entry["who"] is not None and entry["status"] not in (401, 403):
                lines.append(entry)
            else:
                lines += self._refuse(entry)
        self._write(lines)

    def _roll(self, minute: int) -> list[dict[str, Any]]:
        """Return the counts of the minute that ended (if it did), and start a new one."""
        if minute == self._minute:
            return []
        ended = [{"@timestamp": rfc3339(self._minute * 60 + 60), "who": None, "role": None,
                  "remote": remote, "reason": reason, "refused": b["count"], "path": b["path"]}
                 for (remote, reason), b in self._refused.items() if b["count"]]  # fmt: skip
        self._minute, self._refused = minute, {}
        return ended

    def _refuse(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Count a refused call; return it to write if it is the first of its key this minute."""
        key = (str(entry["remote"]), str(entry["reason"] or entry["status"]))
        if key not in self._refused and len(self._refused) >= MAX_KEYS:
            key = ("*", "*")
        bucket = self._refused.get(key)
        if bucket is None:
            self._refused[key] = {"count": 0, "path": entry["path"]}
            return [entry]
        bucket["count"] += 1
        bucket["path"] = entry["path"]  # the latest one's
        return []

    def _write(self, lines: list[dict[str, Any]]) -> None:
        """Append; while the log cannot be written (disk full), the lines go to the agent's log.

        The calls were already carried out: refusing their answers would undo nothing.
        """
        if not lines:
            return
        try:
            self.log.append(lines)
        except OSError as exc:
            SUPERVISOR.count("audit-log")
            if not self._failing:
                log.error("audit log %s cannot be written (%s); entries go to this log until it "
                          "can", self.path, exc.strerror or exc)  # fmt: skip
            self._failing = True
            for line in lines:
                log.warning("audit: %s", json.dumps(line))
            return
        if self._failing:
            self._failing = False
            log.warning("audit log %s is written again", self.path)
