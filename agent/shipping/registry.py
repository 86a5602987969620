"""Committed read offsets per file identity, saved atomically after each acknowledged batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.files import atomic_write


class Registry:
    """{file key: {"path", "offset", "dev", "ino", "gen"}} in one JSON file per input."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except FileNotFoundError:
            self.entries = {}
        except ValueError:  # a torn file cannot happen (atomic rename), but a hand edit can
            self.entries = {}

    def offset(self, key: str) -> int:
        """Return the committed offset of a file (0 if never seen)."""
        return int(self.entries.get(key, {}).get("offset", 0))

    def commit(self, updates: dict[str, dict[str, Any]]) -> None:
        """Record new offsets and write the registry through an atomic rename."""
        for key, entry in updates.items():
            self.entries.setdefault(key, {}).update(entry)
        atomic_write(self.path, json.dumps(self.entries))

    def forget(self, keys: set[str]) -> None:
        """Drop files that are gone for good."""
        for key in keys:
            self.entries.pop(key, None)
