"""Silences: matchers, author, comment and expiry, kept in the state dir as JSON."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.files import atomic_write, set_aside
from agent.matchers import Matcher, parse_matchers

log = logging.getLogger(__name__)

_CLI_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def matcher_from_cli(text: str) -> str:
    """Accept `name=value` or `name="value"`; return the quoted form; raise ValueError."""
    m = _CLI_MATCHER.match(text)
    if not m:
        raise ValueError(f"bad matcher {text!r}: use name=value, name!=value, name=~regex")
    value = m.group(3)
    if not (len(value) >= 2 and value[0] == value[-1] == '"'):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    canonical = f"{m.group(1)}{m.group(2)}{value}"
    parse_matchers(canonical)
    return canonical


@dataclass
class Silence:
    """Mutes every alert its matchers all match, from starts_at until ends_at."""

    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    _compiled: list[Matcher] = field(default_factory=list, repr=False, compare=False)

    def active(self, now: float) -> bool:
        """Return True while the silence is in force."""
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return True if every matcher matches the labels."""
        if not self._compiled:
            self._compiled = [m for text in self.matchers for m in parse_matchers(text)]
        return all(m.matches(labels) for m in self._compiled)

    def to_json(self) -> dict[str, object]:
        """Return the stored form."""
        data = asdict(self)
        data.pop("_compiled")
        return data


RECHECK = 1.0  # seconds between looks at the file's mtime (each evaluation asks: several a second)


class SilenceStore:
    """silences.json, rewritten atomically under a lock; re-read when its mtime changes."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "silences.json"
        self._mtime = -1.0
        self._checked = -math.inf  # monotonic time of the latest stat
        self._cache: list[Silence] = []

    def load(self) -> list[Silence]:
        """Return every silence, expired ones included (another process's within a second)."""
        if time.monotonic() - self._checked < RECHECK:
            return list(self._cache)
        self._checked = time.monotonic()
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._cache = []  # none yet: looked at again in a second
            return []
        if mtime != self._mtime:
            self._cache = self._read(self._cache)
            self._mtime = mtime
        return list(self._cache)

    def _read(self, last: list[Silence]) -> list[Silence]:
        """Parse the file; a damaged one is moved aside (the last good list stays in force)."""
        try:
            data = json.loads(self.path.read_text() or "[]")
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            return self._mend(exc, last)
        if not isinstance(data, list):
            return self._mend("not a list", last)
        out = []
        for record in data:
            try:
                silence = Silence(**record)
                silence.matches({})  # its matchers compile, or it is damaged
                float(silence.starts_at) + float(silence.ends_at)
            except (TypeError, ValueError):
                continue
            out.append(silence)
        if len(out) < len(data):
            log.error("%s: %d damaged silence(s) skipped", self.path, len(data) - len(out))
        return out

    def _mend(self, why: object, last: list[Silence]) -> list[Silence]:
        """Move a damaged file aside and write the last good list in its place."""
        set_aside(self.path, why, f"writing back the {len(last)} silence(s) read before it")
        atomic_write(self.path, json.dumps([s.to_json() for s in last], indent=1))
        return last

    def active(self, now: float) -> list[Silence]:
        """Return the silences in force now (the file is read only if it changed)."""
        return [s for s in self.load() if s.active(now)]

    def silencing(self, labels: Mapping[str, str], now: float) -> Silence | None:
        """Return the active silence that mutes these labels, if any."""
        return next((s for s in self.active(now) if s.matches(labels)), None)

    @contextmanager
    def _locked(self) -> Iterator[list[Silence]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._forget()
            silences = self.load()
            yield silences
            atomic_write(self.path, json.dumps([s.to_json() for s in silences], indent=1))
            self._forget()  # our own write: read it back at once, not after RECHECK

    def _forget(self) -> None:
        """Make the next load read the file, whatever its mtime and however recent the look."""
        self._mtime, self._checked = -1.0, -math.inf

    def add(self, matchers: list[str], duration: float, author: str, comment: str) -> Silence:
        """Create a silence from now for `duration` seconds."""
        now = time.time()
        silence = Silence(uuid.uuid4().hex[:12], matchers, now, now + duration, author, comment)
        silence.matches({})  # compile now: a bad matcher fails here, not in the agent
        with self._locked() as silences:
            silences.append(silence)
        return silence

    def expire(self, silence_id: str) -> bool:
        """End a silence now; False if no active silence has that id."""
        now = time.time()
        with self._locked() as silences:
            for s in silences:
                if s.id == silence_id and s.ends_at > now:
                    s.ends_at = now
                    return True
        return False
