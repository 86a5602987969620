"""Events to ECS documents: strict JSON, the input's mapper, the fields every document carries."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.config.shipping import LogInputConfig, zone
from agent.shipping import timestamps
from agent.shipping.ecs import MAPPERS, request_doc
from agent.shipping.parse import Event

NO_TIME = "_dateparsefailure"  # as Logstash tags a line whose time it could not read
# orjson reads an integer past 64 bits as a float: a record holding one is read again, exactly
PAST_64_BITS = 2.0**63
MAPPING_ERRORS = (ArithmeticError, ValueError, TypeError, AttributeError, OSError)


class Poison(ValueError):
    """A line that parsed but cannot become a document: it goes to the dead letters."""


def _constant(name: str) -> Any:
    raise Poison(f"{name} is not a JSON number")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise Poison(f"number out of range: {text[:40]}")
    return number


_STRICT = json.JSONDecoder(parse_constant=_constant, parse_float=_float)


def loads(data: bytes) -> Any:
    """Parse strict JSON: NaN, Infinity and numbers past a double raise Poison.

    orjson reads plain JSON lines (nearly all, five times faster). What it refuses, and a record
    with a huge number at its top (the level the mappers read), go through the stdlib parser.
    """
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        if not isinstance(record, dict) or not _huge(record):
            return record
    return _STRICT.decode(data.decode("utf-8", errors="replace"))


def dumps(value: Any) -> bytes:
    """Serialise compact UTF-8 JSON; orjson, or the stdlib for an integer past 64 bits."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _huge(record: dict[str, Any]) -> bool:
    """Say whether a top-level value is a float past 64 bits (perhaps a long integer's rounding)."""
    for value in record.values():
        if type(value) is float and not -PAST_64_BITS < value < PAST_64_BITS:
            return True
    return False


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


class Documents:
    """Builds one input's documents; what they all share is built once, not once per line."""

    def __init__(self, cfg: LogInputConfig, node: str, dataset: str) -> None:
        self.cfg, self.dataset = cfg, dataset
        self.json, self.fields = cfg.format == "json", cfg.fields
        self.mapper = MAPPERS.get(dataset, request_doc)
        # Shared by every document and never changed: fewer objects per line for the GC to chase
        self.host, self.service = {"name": node}, {"name": cfg.name}
        self.files: dict[str, dict[str, str]] = {}

    def build(self, event: Event) -> tuple[dict[str, Any], bool]:
        """Build the ECS document; the bool says a JSON input got a line that was not JSON.

        Raises Poison for a line that parsed but cannot be mapped: the shipper dead-letters it.
        """
        doc, malformed = self._body(event.data)
        if "@timestamp" not in doc:  # not setdefault: building the string costs on every line
            doc["@timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if (ecs_event := doc.get("event")) is None:
            doc["event"] = ecs_event = {}
        ecs_event["dataset"], ecs_event["module"] = self.dataset, "dsagent"
        doc["host"], doc["service"] = self.host, self.service
        log = {**doc["log"]} if "log" in doc else {}
        log["file"], log["offset"] = self._file(event.path), event.start
        doc["log"] = log
        if self.fields:
            doc.update(self.fields)
        return doc, malformed

    def _body(self, data: bytes) -> tuple[dict[str, Any], bool]:
        """Map a JSON line, or wrap a text line (or a JSON input's line that is not JSON)."""
        if self.json:
            try:
                record = loads(data)
            except Poison:
                raise
            except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
                record = None
            if isinstance(record, dict):
                try:
                    return self.mapper(record), False
                except MAPPING_ERRORS as exc:
                    raise Poison(f"{type(exc).__name__}: {exc}") from None
        text = data.decode("utf-8", errors="replace")
        doc: dict[str, Any] = {"message": text, "event": {"original": text}}
        if self.json:
            doc["tags"] = ["json_parse_failure"]
            return doc, True
        _own_time(doc, text, self.cfg)
        return doc, False

    def _file(self, path: str) -> dict[str, str]:
        """Return the shared `log.file` of a path (forgotten past 1000 paths: rotated names)."""
        if (file := self.files.get(path)) is None:
            if len(self.files) >= 1000:
                self.files.clear()
            file = self.files[path] = {"path": path}
        return file


def to_doc(
    event: Event, cfg: LogInputConfig, node: str, dataset: str
) -> tuple[dict[str, Any], bool]:
    """Build one document (the shipper keeps a Documents per input instead)."""
    return Documents(cfg, node, dataset).build(event)
