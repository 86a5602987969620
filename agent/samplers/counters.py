"""Per-key deltas between two snapshots of monotonic kernel counters."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class CounterDeltas(Generic[K]):
    """Remembers the previous snapshot and returns what grew since, per key."""

    def __init__(self) -> None:
        self._prev: dict[K, Sequence[float]] = {}
        self._ts: float | None = None

    def update(
        self, now: float, current: Mapping[K, Sequence[float]]
    ) -> tuple[float, dict[K, tuple[float, ...]]]:
        """Store `current`; return seconds elapsed and the deltas of keys seen both times."""
        prev, prev_ts = self._prev, self._ts
        self._prev, self._ts = dict(current), now
        if prev_ts is None or now <= prev_ts:
            return 0.0, {}
        out: dict[K, tuple[float, ...]] = {}
        for key, values in current.items():
            old = prev.get(key)
            if old is None or len(old) != len(values):
                continue
            delta = tuple(v - o for v, o in zip(values, old, strict=True))
            # A counter that went down means the device was replaced or reset:
            # skip one interval rather than report a negative or huge rate.
            if all(d >= 0 for d in delta):
                out[key] = delta
        return now - prev_ts, out


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


def ratio(part: float, whole: float) -> float:
    """Return part/whole, 0 when nothing happened (nothing waited, nothing dropped)."""
    return part / whole if whole > 0 else 0.0


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
