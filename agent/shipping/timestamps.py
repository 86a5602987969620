"""A text log line's own time and level, so a backlog lands in Kibana when it happened.

Formats read at the start of a line (after an optional level word):

- ISO 8601, with `T` or a space, fractions and a zone (`Z`, `+08:00`) or none;
- `YYYY-MM-DD HH:MM:SS,fff`, Python logging's default (a comma before the fraction);
- syslog's `Mon DD HH:MM:SS` (no year: the one that puts it nearest before now);
- vLLM's and uvicorn's `INFO MM-DD HH:MM:SS` (no year either).

Times without a zone are in the input's `timezone` (the host's own by default). An input
can name a strptime `timestamp_format` instead of these.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "WARN", "ERROR", "ERR", "CRITICAL",
          "CRIT", "FATAL", "ALERT", "EMERGENCY")  # fmt: skip
# An upper-case level word (logging, vLLM, uvicorn) or logfmt's level=...: a lower-case
# "error" in a message is not taken for a level.
_LEVEL = re.compile(r"\b(" + "|".join(LEVELS) + r")\b|\blevel=\"?(\w+)")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"\s?(Z|[+-]\d{2}:?\d{2})?"
)
_SYSLOG = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) "
                     r"(\d{2}):(\d{2}):(\d{2})")  # fmt: skip
_SHORT = re.compile(r"(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?")
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTHS = {m: i + 1 for i, m in enumerate(MONTHS)}
HEAD = 64  # how far into a line the time may start (after a level word, a bracket, a pid)


def level(line: str) -> str | None:
    """Return the first log level word near the start of a line, lower-cased, or None."""
    found = _LEVEL.search(line[:HEAD])
    return (found.group(1) or found.group(2)).lower() if found else None


def parse(line: str, tz: tzinfo, now: datetime, fmt: str = "auto") -> datetime | None:
    """Return the time a line starts with (aware, in UTC), or None if it has none we know."""
    head = line[:HEAD]
    try:
        if fmt != "auto":
            return _strptime(head, fmt, tz)
        for reader in (_iso, _syslog, _short):
            found = reader(head, tz, now)
            if found is not None:
                return found.astimezone(UTC)
    except (ValueError, OverflowError):  # Feb 30, hour 25: not a time
        return None
    return None


def _iso(head: str, tz: tzinfo, now: datetime) -> datetime | None:
    m = _ISO.search(head)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    when = datetime(year, month, day, hour, minute, second, micro)
    offset = m.group(8)
    if offset is None:
        return when.replace(tzinfo=tz)
    if offset == "Z":
        return when.replace(tzinfo=UTC)
    sign = 1 if offset[0] == "+" else -1
    digits = offset[1:].replace(":", "")
    delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (when - sign * delta).replace(tzinfo=UTC)


def _syslog(head: str, tz: tzinfo, now: datetime) -> datetime | None:
    m = _SYSLOG.search(head)
    if m is None:
        return None
    hour, minute, second = (int(x) for x in m.groups()[2:5])
    return _nearest_year(datetime(2000, _MONTHS[m.group(1)], int(m.group(2)), hour, minute, second),
                         tz, now)  # fmt: skip


def _short(head: str, tz: tzinfo, now: datetime) -> datetime | None:
    m = _SHORT.search(head)
    if m is None:
        return None
    micro = int((m.group(6) or "0").ljust(6, "0"))
    month, day, hour, minute, second = (int(x) for x in m.groups()[:5])
    return _nearest_year(datetime(2000, month, day, hour, minute, second, micro), tz, now)


def _nearest_year(when: datetime, tz: tzinfo, now: datetime) -> datetime:
    """Give a time read without a year (2000 stands in) this year, or last if over a day ahead."""
    local_now = now.astimezone(tz)
    this = when.replace(year=local_now.year, tzinfo=tz)  # Feb 29 of a common year: ValueError
    return this.replace(year=local_now.year - 1) if this - local_now > timedelta(days=1) else this


def _strptime(head: str, fmt: str, tz: tzinfo) -> datetime | None:
    """Read a configured strptime format from the line's first words (as many as it has)."""
    words = head.split(" ")
    count = len(fmt.split(" "))
    try:
        when = datetime.strptime(" ".join(words[:count]), fmt)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=tz)).astimezone(UTC)
