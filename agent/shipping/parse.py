"""Lines to events (multiline), events to ECS documents with deterministic ids."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.config.shipping import LogInputConfig, zone
from agent.shipping import timestamps
from agent.shipping.ecs import MAPPERS, request_doc
from agent.shipping.tail import Line

NO_TIME = "_dateparsefailure"  # as Logstash tags a line whose time it could not read
OOM = re.compile(rb"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED")


@dataclass
class Event:
    """One log event: one line, or a first line and its continuation lines."""

    key: str
    path: str
    start: int
    end: int
    data: bytes


class Assembler:
    """Joins continuation lines to the event they belong to, per file."""

    def __init__(self, first_line: str | None) -> None:
        self.first = re.compile(first_line.encode()) if first_line else None
        self.pending: dict[str, Event] = {}
        self.touched: dict[str, float] = {}

    def feed(self, line: Line) -> Iterator[Event]:
        """Take one line; yield the events it completes."""
        if self.first is None:
            yield Event(line.key, line.path, line.start, line.end, line.data)
            return
        self.touched[line.key] = time.monotonic()
        held = self.pending.get(line.key)
        if held is not None and not self.first.search(line.data):
            held.data += b"\n" + line.data
            held.end = line.end
            return
        if held is not None:
            yield held
        self.pending[line.key] = Event(line.key, line.path, line.start, line.end, line.data)

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


class Poison(ValueError):
    """A line that parsed but cannot become a document: it goes to the dead letters."""


def _constant(name: str) -> Any:
    raise Poison(f"{name} is not a JSON number")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise Poison(f"number out of range: {text[:40]}")
    return number


def loads(text: str) -> Any:
    """Parse strict JSON: NaN, Infinity and numbers past a double raise Poison."""
    return json.loads(text, parse_constant=_constant, parse_float=_float)


def _own_time(doc: dict[str, Any], text: str, cfg: LogInputConfig) -> None:
    """Put a text line's own time and level in; tag it when it has no time we can read."""
    first = text.split("\n", 1)[0]  # a multiline event takes its first line's time
    when = timestamps.parse(first, zone(cfg.timezone), datetime.now(UTC),
                            cfg.timestamp_format)  # fmt: skip
    if when is None:
        doc["tags"] = [NO_TIME]
    else:
        doc["@timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if (found := timestamps.level(first)) is not None:
        doc["log"] = {"level": found}


def to_doc(
    event: Event, cfg: LogInputConfig, node: str, dataset: str
) -> tuple[dict[str, Any], bool]:
    """Build the ECS document; the bool says a JSON input got a line that was not JSON.

    Raises Poison for a line that parsed but cannot be mapped: the shipper dead-letters it.
    """
    text = event.data.decode("utf-8", errors="replace")
    doc: dict[str, Any] = {}
    malformed = False
    if cfg.format == "json":
        try:
            record = loads(text)
        except Poison:
            raise
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            record = None
        malformed = not isinstance(record, dict)
        if isinstance(record, dict):
            mapper = MAPPERS.get(dataset, request_doc)
            try:
                doc = mapper(record)
            except (ArithmeticError, ValueError, TypeError, AttributeError, OSError) as exc:
                raise Poison(f"{type(exc).__name__}: {exc}") from None
    if cfg.format == "text" or malformed:
        doc = {"message": text, "event": {"original": text}}
        if malformed:
            doc["tags"] = ["json_parse_failure"]
        else:
            _own_time(doc, text, cfg)
    if "@timestamp" not in doc:  # not setdefault: building the string costs on every line
        doc["@timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    doc.setdefault("event", {}).update({"dataset": dataset, "module": "dsagent"})
    doc["host"] = {"name": node}
    doc["service"] = {"name": cfg.name}
    doc["log"] = {**doc.get("log", {}), "file": {"path": event.path}, "offset": event.start}
    if cfg.fields:
        doc.update(cfg.fields)
    return doc, malformed
