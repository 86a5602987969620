"""Committed read offsets per file identity, saved atomically after each acknowledged batch.

The copy before the latest is kept beside it (<name>.prev): a damaged registry falls back to
it, so at most the batches since are read again, not every file from its start. Documents keep
their _id (file identity and offset), so Elasticsearch stores no doubles either way.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from agent.files import atomic_write, set_aside

log = logging.getLogger(__name__)
Entries = dict[str, dict[str, Any]]


def _valid(entry: object) -> bool:
    """Tell whether an entry is a mapping whose offset and identity are non-negative integers."""
    if not isinstance(entry, dict):
        return False
    numbers = [entry.get(k, 0) for k in ("offset", "dev", "ino", "gen")]
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)


def parse_entries(text: str) -> tuple[Entries, list[str]]:
    """Return a registry's good entries and the files of damaged ones; ValueError if none."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    good = {str(k): v for k, v in data.items() if _valid(v)}
    bad = [str(v.get("path", k)) if isinstance(v, dict) else str(k)
           for k, v in data.items() if str(k) not in good]  # fmt: skip
    return good, bad


class Registry:
    """{file key: {"path", "offset", "dev", "ino", "gen"}} in one JSON file per input."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = path.with_name(path.name + ".prev")
        self.entries: Entries = self._load()

    def _load(self) -> Entries:
        """Read the registry, else its previous copy; say what was lost."""
        damaged = False
        for candidate in (self.path, self.previous):
            try:
                good, bad = parse_entries(candidate.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                damaged = True
                set_aside(candidate, exc, "trying the previous copy")
                continue
            if bad:
                names = ", ".join(bad[:5])
                log.error("registry %s: %d damaged offset(s) dropped (%s): those files are read "
                          "again from their start", candidate, len(bad), names)  # fmt: skip
            if damaged:
                when = time.strftime("%H:%M:%S", time.localtime(candidate.stat().st_mtime))
                log.error("registry %s: using the copy from %s; what shipped since is read "
                          "again (Elasticsearch keeps one copy of each document)", self.path,
                          when)  # fmt: skip
            return good
        if damaged:
            log.error("registry %s: no good copy left: every file of this input is read again "
                      "from its start (Elasticsearch keeps one copy of each document)",
                      self.path)  # fmt: skip
        return {}

    def offset(self, key: str) -> int:
        """Return the committed offset of a file (0 if never seen)."""
        return int(self.entries.get(key, {}).get("offset", 0))

    def commit(self, updates: Entries) -> None:
        """Record new offsets; the copy they replace becomes the previous one."""
        for key, entry in updates.items():
            self.entries.setdefault(key, {}).update(entry)
        if self.path.exists():
            os.replace(self.path, self.previous)  # the new copy lands by rename below
        atomic_write(self.path, json.dumps(self.entries))

    def forget(self, keys: set[str]) -> None:
        """Drop files that are gone for good."""
        for key in keys:
            self.entries.pop(key, None)
