"""Tail files by identity (device, inode, truncation generation): rename and copytruncate safe.

Only regular files are read, opened without following a symlink and without blocking (a FIFO
would stop the input for good); a symlink is followed only when the input allows it, and only to
a file its own globs match. A run of NULs (a sparse hole, a preallocated tail) is skipped, not
shipped. Each skip is counted and said once per file.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from agent.shipping.registry import Registry

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20  # a longer line is cut here and the rest starts a new line
CHUNK = MAX_LINE  # read at most this much at once: a batch stops after batch_size lines
NULS = b"\0" * 64  # a run this long is no text: a hole or a preallocated region
LEFT_OUT = {
    "symlink": "a symlink (set follow_symlinks = true to follow it)",
    "symlink_target": "a symlink to a file the input's paths do not match",
    "not_regular": "not a regular file (a FIFO, socket or device)",
}


@dataclass(slots=True)
class Tracked:
    """One open file."""

    dev: int
    ino: int
    gen: int
    path: str
    fh: BinaryIO
    read_to: int  # bytes handed out as lines
    idle: int = 0  # polls with nothing new while its path points elsewhere
    nuls: int = 0  # bytes of NUL runs skipped

    @property
    def key(self) -> str:
        """Identity used in document ids and the registry."""
        return f"{self.dev}:{self.ino}:{self.gen}"


@dataclass(slots=True)
class Line:
    """A complete line and where it ends in its file."""

    key: str
    path: str
    start: int
    end: int
    data: bytes


class Tailer:
    """Finds files by glob, follows renamed ones to their end, restarts truncated ones."""

    def __init__(self, patterns: list[str], registry: Registry,
                 follow_symlinks: bool = False) -> None:  # fmt: skip
        self.patterns, self.registry = patterns, registry
        self.follow_symlinks = follow_symlinks
        self.files: dict[tuple[int, int], Tracked] = {}
        self.skipped: Counter[str] = Counter()  # files left out, by reason
        self.nul_bytes = 0  # bytes of NUL runs skipped
        self._left_out: set[tuple[str, str]] = set()  # (path, reason) already said
        self._adopt_renamed()

    def _adopt_renamed(self) -> None:
        """After a restart, find registry files whose name changed (renamed by logrotate)."""
        dirs = {os.path.dirname(p) or "." for p in self.patterns}
        wanted = {
            (e["dev"], e["ino"]): (k, e) for k, e in self.registry.entries.items() if "ino" in e
        }
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                hit = wanted.get((st.st_dev, st.st_ino))
                if hit and stat.S_ISREG(st.st_mode):
                    self._open(entry.path, st, hit[1].get("gen", 0), self.registry.offset(hit[0]))

    def _admit(self, path: str) -> os.stat_result | None:
        """Return the stat of a file the input may read, or None (a skip, said once)."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                reason = self._link_refused(path)
                if reason:
                    self._leave_out(path, reason)
                    return None
                st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            self._leave_out(path, "not_regular")
            return None
        return st

    def _link_refused(self, path: str) -> str:
        """Return why a symlink is not followed, or "" if it may be."""
        if not self.follow_symlinks:
            return "symlink"
        target = os.path.realpath(path)
        return (
            "" if any(fnmatch.fnmatchcase(target, p) for p in self.patterns) else "symlink_target"
        )

    def _leave_out(self, path: str, reason: str) -> None:
        """Count and say once that a path is not read."""
        if (path, reason) not in self._left_out:
            self._left_out.add((path, reason))
            self.skipped[reason] += 1
            log.warning("log input: %s left out: %s", path, LEFT_OUT[reason])

    def _open(self, path: str, st: os.stat_result, gen: int, offset: int) -> None:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(path, flags | (0 if self.follow_symlinks else os.O_NOFOLLOW))
        except OSError:  # gone, or a symlink put there since it was looked at (ELOOP)
            return
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            st.st_dev,
            st.st_ino,
        ):
            os.close(fd)  # replaced between the look and the open: looked at again next poll
            return
        fh = os.fdopen(fd, "rb")
        if offset > st.st_size:  # truncated while we were down
            gen, offset = gen + 1, 0
        fh.seek(offset)
        self.files[(st.st_dev, st.st_ino)] = Tracked(st.st_dev, st.st_ino, gen, path, fh, offset)

    def _matching(self) -> Iterator[tuple[str, os.stat_result]]:
        """Yield each file the globs match now, with its stat."""
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                st = self._admit(path)
                if st is not None:
                    yield path, st

    def discover(self) -> None:
        """Open files that newly match the globs (new files are picked up while running)."""
        for path, st in self._matching():
            ident = (st.st_dev, st.st_ino)
            if ident in self.files:
                self.files[ident].path = path
                continue
            key = f"{st.st_dev}:{st.st_ino}:"
            gen = max([int(k.rsplit(":", 1)[1]) for k in self.registry.entries
                       if k.startswith(key)] or [0])  # fmt: skip
            self._open(path, st, gen, self.registry.offset(f"{key}{gen}"))

    def lines(self, max_bytes: int) -> Iterator[Line]:
        """Yield complete new lines from every file, at most about max_bytes in all."""
        budget = max_bytes
        for tracked in list(self.files.values()):
            self._check_truncated(tracked)
            for line in self._read(tracked, budget):
                budget -= len(line.data)
                yield line
            if budget <= 0:
                return

    def _check_truncated(self, t: Tracked) -> None:
        try:
            size = os.fstat(t.fh.fileno()).st_size
        except OSError:
            return
        if size < t.read_to:  # copytruncate: a new generation from the start
            t.gen, t.read_to = t.gen + 1, 0
            t.fh.seek(0)

    def _read(self, t: Tracked, budget: int) -> Iterator[Line]:
        """Yield lines from a file in chunks: a caller that stops early wasted one chunk at most."""
        while budget > 0:
            t.fh.seek(t.read_to)
            data = t.fh.read(CHUNK)
            run = data.find(NULS)
            if run == 0:
                budget -= self._skip_nuls(t, data)
                continue
            last = data.rfind(b"\n") if run < 0 else run - 1  # text before a NUL run ends there
            if last < 0:
                if len(data) < CHUNK:  # an unfinished line: wait for the rest of it
                    t.idle += 1
                    return
                last = len(data) - 1  # a line past MAX_LINE: cut here, the rest is a new line
            t.idle = 0
            key, path = t.key, t.path
            for raw in data[: last + 1].splitlines(keepends=True):
                start = t.read_to
                t.read_to += len(raw)  # before the yield: the caller may stop after any line
                yield Line(key, path, start, t.read_to, raw.rstrip(b"\r\n"))
            budget -= last + 1

    def _skip_nuls(self, t: Tracked, data: bytes) -> int:
        """Step over the NUL run at the read position (a hole at once); return its length."""
        step = len(data) - len(data.lstrip(b"\0"))
        if step == len(data):  # all of the chunk: the filesystem says where data resumes
            try:
                step = max(step, os.lseek(t.fh.fileno(), t.read_to + step, os.SEEK_DATA)
                           - t.read_to)  # fmt: skip
            except OSError as exc:  # ENXIO: a hole to the end of the file
                if exc.errno == errno.ENXIO:
                    step = max(step, os.fstat(t.fh.fileno()).st_size - t.read_to)
        if not t.nuls:
            log.warning("log input: %s has a run of NUL bytes (a sparse or preallocated region) "
                        "at %d: skipped, not shipped", t.path, t.read_to)  # fmt: skip
        t.read_to += step
        t.nuls += step
        self.nul_bytes += step
        return step

    def close_finished(self) -> set[str]:
        """Close files renamed away that have been read to their end; return their keys."""
        current = {(st.st_dev, st.st_ino) for _, st in self._matching()}
        done = set()
        for ident, t in list(self.files.items()):
            if ident not in current and t.idle >= 3:
                t.fh.close()
                del self.files[ident]
                done.add(t.key)
        return done

    def lag_bytes(self) -> int:
        """Bytes written but not yet read, over all files."""
        lag = 0
        for t in self.files.values():
            try:
                lag += max(0, os.fstat(t.fh.fileno()).st_size - t.read_to)
            except OSError:
                continue
        return lag

    def close(self) -> None:
        """Close every file."""
        for t in self.files.values():
            t.fh.close()
        self.files.clear()
