"""Append-only JSON-lines logs in the state dir: the alert log and the audit log."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def rfc3339(ts: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLinesLog:
    """Appends one JSON object per event; rotates to .1 past a size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entry: dict[str, Any], ts: float) -> None:
        """Append one event (fsynced: the log is a record, not a cache)."""
        line = json.dumps({"@timestamp": rfc3339(ts), **entry}, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                if self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            except FileNotFoundError:
                pass
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
