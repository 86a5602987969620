"""Tail files by identity (device, inode, truncation generation): rename and copytruncate safe."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from agent.shipping.registry import Registry

MAX_LINE = 1 << 20  # a longer line is cut here and the rest starts a new line
CHUNK = MAX_LINE  # read at most this much at once: a batch stops after batch_size lines


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

    def __init__(self, patterns: list[str], registry: Registry) -> None:
        self.patterns, self.registry = patterns, registry
        self.files: dict[tuple[int, int], Tracked] = {}
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
                if hit and entry.is_file():
                    self._open(entry.path, st, hit[1].get("gen", 0), self.registry.offset(hit[0]))

    def _open(self, path: str, st: os.stat_result, gen: int, offset: int) -> None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open to follow the file through renames
        except OSError:
            return
        if offset > st.st_size:  # truncated while we were down
            gen, offset = gen + 1, 0
        fh.seek(offset)
        self.files[(st.st_dev, st.st_ino)] = Tracked(st.st_dev, st.st_ino, gen, path, fh, offset)

    def _matching(self) -> Iterator[tuple[str, os.stat_result]]:
        """Yield each file the globs match now, with its stat."""
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                try:
                    yield path, os.stat(path)
                except OSError:
                    continue

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
            last = data.rfind(b"\n")
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
