"""Durations written as "250ms", "1s", "5m", "1h30m" (Prometheus style), in seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: object) -> float:
    """Return seconds for a duration string or a plain number of seconds; else ValueError."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 1s, 5m, 1h30m")
    if isinstance(text, int | float):
        if not 0 <= text < float("inf"):
            raise ValueError(f"invalid duration {text!r}: must be a finite number >= 0")
        return float(text)
    raw = text.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 1s, 5m, 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds back into the shortest exact duration string."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
