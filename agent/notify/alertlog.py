"""The alert log: every transition as a JSON line in the state dir, the receiver always there."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from agent.notify.payload import rfc3339


class AlertLog:
    """Appends one JSON object per transition; rotates to .1 past a size."""

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
