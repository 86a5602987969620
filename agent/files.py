"""Durable files in the state dir: atomic replacement, and rotating JSON-lines logs."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def rfc3339(ts: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` through a fsynced temporary file: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonLinesLog:
    """Appends one JSON object a line, fsynced; past max_bytes it rotates to .1 … .keep."""

    def __init__(self, path: Path, max_bytes: int, keep: int = 1) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entry: dict[str, Any], ts: float) -> None:
        """Append one event stamped with @timestamp (the log is a record, not a cache)."""
        self.append([{"@timestamp": rfc3339(ts), **entry}])

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append objects as they are, in one write and one fsync."""
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        with self._lock:
            self._rotate()
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

    def _rotate(self) -> None:
        try:
            if self.path.stat().st_size <= self.max_bytes:
                return
        except FileNotFoundError:
            return
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
