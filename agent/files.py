"""Files: atomic replacement, rotating JSON-lines logs, and kernel files kept open."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def rfc3339(ts: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` through a fsynced temporary file: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (its entry, not only the file's data)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside(path: Path, why: object, kept: str) -> Path | None:
    """Move a damaged state file to <name>.corrupt-<UTC time>, saying so once at ERROR.

    `kept` says what the agent goes on with. Returns the new path, or None if it could not move.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, dest)
    except OSError as exc:
        log.error("%s is damaged (%s) and could not be moved aside (%s); %s", path, why,
                  exc.strerror or exc, kept)  # fmt: skip
        return None
    log.error("%s is damaged (%s): moved to %s; %s", path, why, dest.name, kept)
    return dest


class JsonLinesLog:
    """Appends one JSON object a line, fsynced; past max_bytes it rotates to .1 … .keep."""

    def __init__(self, path: Path, max_bytes: int, keep: int = 1) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._lock = threading.Lock()
        self._size = -1  # the file's size after the last write; -1 until first looked at
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, entry: dict[str, Any], ts: float) -> None:
        """Append one event stamped with @timestamp (the log is a record, not a cache)."""
        self.append([{"@timestamp": rfc3339(ts), **entry}])

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append objects as they are, in one write and one fsync."""
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        self.append_lines(text.encode())

    def append_lines(self, data: bytes) -> None:
        """Append lines already encoded (each ends in a newline), in one write and one fsync.

        The write is one O_APPEND write(2), whole whoever else appends, so no lock is held
        across it or the fsync; the lock guards the rare rotation alone.
        """
        with self._lock:
            if self._size < 0 or self._size > self.max_bytes:
                self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:  # one write(2) but for a short one (a full disk raises)
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            self._size = os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        """Rotate when the file is past max_bytes (lock held); learn its size."""
        try:
            self._size = self.path.stat().st_size
        except FileNotFoundError:
            self._size = 0
        if self._size <= self.max_bytes:
            return
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._size = 0


class KernelFile:
    """A kernel file kept open, read again from offset 0 each round: procfs writes it anew.

    An open and a close for each file each round cost as much as reading it. A file with a size
    (a regular one, as in a test's fixture tree) is opened every time: it may be replaced.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 1 << 16  # grows when a file fills it: a short read is the whole file

    def read(self) -> str:
        """Return the file's text now."""
        fd = self._fd if self._fd is not None else os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while len(data := os.pread(fd, self._size, 0)) == self._size:
                self._size *= 2
            if self._fd is None and os.fstat(fd).st_size == 0:
                self._fd, fd = fd, -1  # generated as it is read: keep it open
        finally:
            if fd >= 0 and fd != self._fd:
                os.close(fd)
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Close the kept descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class KernelFiles:
    """A sampler's kernel files under its root (/proc, or a test's tree), each kept open."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[Path, KernelFile]] = {}

    def read(self, root: Path, name: str) -> str:
        """Return the text of root/name now."""
        kept = self._files.get(name)
        if kept is None or (kept[0] is not root and kept[0] != root):
            if kept is not None:
                kept[1].close()
            kept = self._files[name] = (root, KernelFile(root / name))
        return kept[1].read()

    def close(self) -> None:
        """Close every kept descriptor."""
        for _, f in self._files.values():
            f.close()
        self._files.clear()
