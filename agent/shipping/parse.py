"""Lines to events (multiline), with deterministic document ids."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator

from agent.shipping.tail import Line

Event = Line  # one log event: one line, or a first line with its continuation lines joined


class Assembler:
    """Joins continuation lines to the event they belong to, per file."""

    def __init__(self, first_line: str | None) -> None:
        self.first = re.compile(first_line.encode()) if first_line else None
        self.pending: dict[str, Event] = {}
        self.touched: dict[str, float] = {}

    def feed(self, line: Line) -> list[Event]:
        """Take one line; return the events it completes."""
        if self.first is None:
            return [line]
        self.touched[line.key] = time.monotonic()
        held = self.pending.get(line.key)
        if held is not None and not self.first.search(line.data):
            held.data += b"\n" + line.data
            held.end = line.end
            return []
        self.pending[line.key] = Event(line.key, line.path, line.start, line.end, line.data)
        return [] if held is None else [held]

    def flush(self, idle: float) -> Iterator[Event]:
        """Release events that got no continuation for `idle` seconds."""
        now = time.monotonic()
        for key in [k for k, t in self.touched.items() if now - t >= idle]:
            event = self.pending.pop(key, None)
            self.touched.pop(key, None)
            if event is not None:
                yield event


def doc_id(key: str, offset: int) -> str:
    """Return the id of a document: its file and offset, so a replay collides, never doubles."""
    return hashlib.sha1(f"{key}@{offset}".encode()).hexdigest()
