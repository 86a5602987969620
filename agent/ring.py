"""A series' ring buffer: fixed capacity, float32 while that is exact, bisection in C."""

from __future__ import annotations

import bisect
import math
from array import array


def _refit(stamps: list[float]) -> tuple[array[float], float] | None:
    """Return float32 offsets of these timestamps from the oldest, if every one is exact."""
    base = stamps[0] if stamps else 0.0
    offsets = array("f", [ts - base for ts in stamps])
    exact = all(base + off == ts for off, ts in zip(offsets, stamps, strict=True))
    return (offsets, base) if exact else None


class Ring:
    """Fixed-capacity ring of (timestamp, value) pairs kept in two arrays.

    Both arrays start as float32, half the memory of float64: timestamps as offsets from the
    oldest sample's (a grid of whole or half seconds is exact for 97 days, then re-based), values
    as they are. The first one float32 cannot hold exactly turns its array to float64, for good:
    what is read back is always exactly what was written.
    """

    __slots__ = ("_base", "_head", "_len", "_since", "_ts", "_vals", "latest", "newest")

    def __init__(self, capacity: int) -> None:
        self._ts = array("f", bytes(4 * capacity))  # offsets from _base
        self._vals = array("f", bytes(4 * capacity))
        self._base = 0.0
        self._head = 0
        self._len = 0
        # The newest timestamp and value, kept apart: every scrape reads them. Read-only outside.
        self.newest = float("-inf")
        self.latest = 0.0
        self._since = 0.0  # when the run of samples equal to the newest value began

    def __len__(self) -> int:
        return self._len

    def _find(self, t: float, right: bool) -> int:
        """Bisect for a timestamp on the (at most two) contiguous segments, in C."""
        find = bisect.bisect_right if right else bisect.bisect_left
        arr, head, n = self._ts, self._head, self._len
        t -= self._base
        cap = len(arr)
        if head + n <= cap:
            return find(arr, t, head, head + n) - head
        split = arr[cap - 1]
        if split > t or (not right and split == t):
            return find(arr, t, head, cap) - head
        return cap - head + find(arr, t, 0, head + n - cap)

    def last(self) -> tuple[float, float] | None:
        """Return the newest (timestamp, value), if any."""
        return (self.newest, self.latest) if self._len else None

    def append(self, ts: float, value: float) -> bool:
        """Add a sample; refuse (False) one older than or equal to the newest."""
        if ts <= self.newest:
            return False
        n, times, vals = self._len, self._ts, self._vals
        cap = len(times)
        i = self._head + n
        if n < cap:
            self._len = n + 1
        else:  # full: the oldest slot, at the head, is overwritten
            i -= cap
            self._head = 0 if i + 1 == cap else i + 1
        if i >= cap:
            i -= cap
        if value == self.latest and n:  # most series hold still: the newest value fits already
            vals[i] = self.latest = value  # (-0.0 after 0.0 is kept as written)
        else:
            self._since, self.latest = ts, value
            vals[i] = value
            if vals[i] != value and not math.isnan(value):  # NaN is NaN in either width
                self._vals = array("d", vals)
                self._vals[i] = value
        self.newest = ts
        base = self._base if n else ts
        self._base = base
        off = ts - base
        times[i] = off
        if times[i] != off or base + off != ts:
            self._fit_times()  # the oldest may have moved on: re-based, or float64 for good
        return True

    def _fit_times(self) -> None:
        """Re-base the float32 offsets on the oldest sample, or turn them float64."""
        stamps = [self._base + off for off in self._logical(self._ts)]
        stamps[-1] = self.newest  # its offset may be the one that did not fit
        fitted = _refit(stamps) if self._ts.typecode == "f" else None
        flat = fitted[0] if fitted else array("d", stamps)
        self._base = fitted[1] if fitted else 0.0
        arr = array("f" if fitted else "d", bytes(flat.itemsize * len(self._ts)))
        arr[: len(flat)] = flat
        self._vals = self._logical(self._vals) + self._vals[len(flat) :]  # the same order
        self._ts, self._head = arr, 0

    def _logical(self, arr: array[float]) -> array[float]:
        """Return the held part of an array, oldest first."""
        return self._slice(arr, 0, self._len)

    def _bounds(self, start: float, end: float) -> tuple[int, int]:
        """Return the logical positions lo..hi of the samples with start <= ts <= end."""
        return self._find(start, False), self._find(end, True)

    def between(self, start: float, end: float) -> tuple[array[float], array[float]]:
        """Return the timestamps and values with start <= ts <= end, oldest first."""
        lo, hi = self._bounds(start, end)
        return self._times(lo, hi), self._slice(self._vals, lo, hi)

    def values(self, start: float, end: float) -> array[float]:
        """Return the values with start <= ts <= end, oldest first (no timestamps to build)."""
        return self._slice(self._vals, *self._bounds(start, end))

    def edges(self, start: float, end: float) -> tuple[tuple[float, float], array[float]]:
        """Return the first and last timestamps with start <= ts <= end, and all the values.

        What rate() needs: the timestamps in between are not built.
        """
        lo, hi = self._bounds(start, end)
        if hi <= lo:
            return (math.nan, math.nan), array("d")
        return (self._at(lo), self._at(hi - 1)), self._slice(self._vals, lo, hi)

    def _times(self, lo: int, hi: int) -> array[float]:
        offsets = self._slice(self._ts, lo, hi)
        base = self._base
        return array("d", map(base.__add__, offsets) if base else offsets)

    def _at(self, pos: int) -> float:
        """Return the timestamp at a logical position."""
        return self._base + self._ts[(self._head + pos) % len(self._ts)]

    def steady(self, start: float, end: float) -> tuple[int, float] | None:
        """If every sample in [start, end] has the newest value, return (1 or 2, the value).

        Most GPU series are flags and counters that do not move; their windows need no copy
        and no search. The run must reach back to `start`, or to the oldest sample held. The
        count stops at two, all a window function of one value needs (increase needs two).
        """
        n = self._len
        if not n or not start <= self.newest <= end:
            return None
        if self._since > start and self._since > self._at(0):
            return None
        two = n > 1 and self._at(n - 2) >= start
        return (2 if two else 1), self.latest

    def newest_between(self, start: float, end: float) -> tuple[float, float] | None:
        """Return the newest (timestamp, value) with start <= ts <= end."""
        if self.newest <= end:  # nothing newer than the window (rules ask at "now"): no search
            return (self.newest, self.latest) if self._len and self.newest >= start else None
        hi = self._find(end, True)
        if hi == 0:
            return None
        ts = self._at(hi - 1)
        return (ts, self._vals[(self._head + hi - 1) % len(self._vals)]) if ts >= start else None

    def _slice(self, arr: array[float], lo: int, hi: int) -> array[float]:
        """Copy logical positions lo..hi out of the circular array (one or two C slices)."""
        if hi <= lo:
            return array(arr.typecode)
        cap = len(arr)
        a, b = (self._head + lo) % cap, (self._head + hi) % cap
        return arr[a:b] if a < b else arr[a:] + arr[:b]
