"""The series store: the one hub that samplers write to and every reader reads from."""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

Labels = tuple[tuple[str, str], ...]
Kind = Literal["gauge", "counter"]


class Sample(NamedTuple):
    """One measured value of one series; samplers yield these."""

    name: str
    value: float
    labels: Labels = ()


class MetricInfo(NamedTuple):
    """What a metric name means: its Prometheus type and help text."""

    kind: Kind
    help: str


def sample(name: str, value: float, **labels: object) -> Sample:
    """Build a Sample with labels given as keyword arguments."""
    return Sample(name, float(value), tuple(sorted((k, str(v)) for k, v in labels.items())))


class Ring:
    """Fixed-capacity ring of (timestamp, value) pairs kept in two float arrays."""

    __slots__ = ("_head", "_len", "_newest", "_ts", "_vals")

    def __init__(self, capacity: int) -> None:
        self._ts = array("d", bytes(8 * capacity))
        self._vals = array("d", bytes(8 * capacity))
        self._head = 0
        self._len = 0
        self._newest = float("-inf")

    def __len__(self) -> int:
        return self._len

    def _find(self, t: float, right: bool) -> int:
        """Bisect for a timestamp on the (at most two) contiguous segments, in C."""
        find = bisect.bisect_right if right else bisect.bisect_left
        arr, head, n = self._ts, self._head, self._len
        cap = len(arr)
        if head + n <= cap:
            return find(arr, t, head, head + n) - head
        split = arr[cap - 1]
        if split > t or (not right and split == t):
            return find(arr, t, head, cap) - head
        return cap - head + find(arr, t, 0, head + n - cap)

    def last(self) -> tuple[float, float] | None:
        """Return the newest (timestamp, value), if any."""
        if not self._len:
            return None
        i = (self._head + self._len - 1) % len(self._ts)
        return self._ts[i], self._vals[i]

    def append(self, ts: float, value: float) -> bool:
        """Add a sample; refuse (False) one older than or equal to the newest."""
        if ts <= self._newest:
            return False
        self._newest = ts
        cap = len(self._ts)
        i = (self._head + self._len) % cap
        self._ts[i], self._vals[i] = ts, value
        if self._len < cap:
            self._len += 1
        else:
            self._head = (self._head + 1) % cap
        return True

    def between(self, start: float, end: float) -> tuple[array[float], array[float]]:
        """Return the timestamps and values with start <= ts <= end, oldest first."""
        lo, hi = self._find(start, False), self._find(end, True)
        return self._slice(self._ts, lo, hi), self._slice(self._vals, lo, hi)

    def newest_between(self, start: float, end: float) -> tuple[float, float] | None:
        """Return the newest (timestamp, value) with start <= ts <= end."""
        hi = self._find(end, True)
        if hi == 0:
            return None
        i = (self._head + hi - 1) % len(self._ts)
        return (self._ts[i], self._vals[i]) if self._ts[i] >= start else None

    def _slice(self, arr: array[float], lo: int, hi: int) -> array[float]:
        """Copy logical positions lo..hi out of the circular array (one or two C slices)."""
        if hi <= lo:
            return array("d")
        cap = len(arr)
        a, b = (self._head + lo) % cap, (self._head + hi) % cap
        return arr[a:b] if a < b else arr[a:] + arr[:b]


@dataclass(eq=False, slots=True)
class Series:
    """One labelled series: its ring buffer and which sampler owns it."""

    name: str
    labels: Labels
    source: str
    ring: Ring
    stale: bool = False


@dataclass
class StoreStats:
    """Counters about the store itself, exported as dsagent_store_*."""

    out_of_order: int = 0
    evicted: int = 0


class SeriesStore:
    """Labelled series in bounded rings; thread-safe; evicts series unseen for a retention."""

    def __init__(self, retention: float = 900.0, interval: float = 1.0) -> None:
        self.retention = retention
        self.capacity = int(retention / interval) + 2
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[Labels, Series]] = {}
        self._by_source: dict[str, set[Series]] = {}
        self._meta: dict[str, MetricInfo] = {}
        self._last_evict = 0.0
        self._versions: dict[str, int] = {}  # bumped when a family gains or loses a series
        self._selected: dict[Hashable, tuple[int, list[Series]]] = {}

    def describe(self, infos: Mapping[str, MetricInfo]) -> None:
        """Register the type and help of metric names."""
        with self._lock:
            self._meta.update(infos)

    def info(self, name: str) -> MetricInfo:
        """Return what is known of a metric name (an untyped gauge if nothing)."""
        return self._meta.get(name, MetricInfo("gauge", name.replace("_", " ")))

    def ingest(self, source: str, samples: Iterable[Sample], ts: float) -> None:
        """Append one run's samples; the source's series missing from it turn stale."""
        with self._lock:
            seen: set[Series] = set()
            for s in samples:
                series = self._series(s.name, s.labels, source)
                if series.ring.append(ts, s.value):
                    series.stale = False
                else:
                    self.stats.out_of_order += 1
                seen.add(series)
            owned = self._by_source.setdefault(source, set())
            for series in owned - seen:
                series.stale = True
            owned |= seen
            if ts - self._last_evict >= 60.0:
                self._evict(ts)

    def _series(self, name: str, labels: Labels, source: str) -> Series:
        family = self._by_name.setdefault(name, {})
        series = family.get(labels)
        if series is None:
            series = family[labels] = Series(name, labels, source, Ring(self.capacity))
            self._versions[name] = self._versions.get(name, 0) + 1
        return series

    def _evict(self, now: float) -> None:
        """Drop series with no sample inside the retention, so churn cannot grow memory."""
        self._last_evict = now
        horizon = now - self.retention
        for name, family in list(self._by_name.items()):
            for labels, series in list(family.items()):
                newest = series.ring.last()
                if newest is None or newest[0] < horizon:
                    del family[labels]
                    self._versions[name] = self._versions.get(name, 0) + 1
                    self._by_source.get(series.source, set()).discard(series)
                    self.stats.evicted += 1
            if not family:
                del self._by_name[name]

    def select(self, name: str, match: Callable[[Labels], bool] | None = None,
               key: Hashable | None = None) -> list[Series]:  # fmt: skip
        """Return the series of a name whose labels pass the matcher.

        With a `key` (a rule's selector), the answer is remembered until the family changes,
        so a thousand rules do not re-match ten thousand label sets every evaluation.
        """
        with self._lock:
            version = self._versions.get(name, 0)
            cached = self._selected.get(key) if key is not None else None
            if cached is not None and cached[0] == version:
                return cached[1]
            family = list(self._by_name.get(name, {}).values())
        found = [s for s in family if match is None or match(s.labels)]
        if key is not None:
            with self._lock:
                if len(self._selected) > 100_000:
                    self._selected.clear()
                self._selected[key] = (version, found)
        return found

    def window(self, series: Series, start: float, end: float) -> tuple[array[float], array[float]]:
        """Return a series' samples inside [start, end]."""
        with self._lock:
            return series.ring.between(start, end)

    def newest(self, series: Series, start: float, end: float) -> tuple[float, float] | None:
        """Return a series' newest sample inside [start, end]."""
        with self._lock:
            return series.ring.newest_between(start, end)

    def current(self) -> Iterator[tuple[str, Labels, float]]:
        """Yield the newest value of every series that is not stale."""
        with self._lock:
            rows = [
                (name, labels, last[1])
                for name, family in self._by_name.items()
                for labels, series in family.items()
                if not series.stale and (last := series.ring.last()) is not None
            ]
        yield from rows

    def names(self) -> list[str]:
        """Return every metric name held."""
        with self._lock:
            return sorted(self._by_name)

    def series_count(self) -> int:
        """Return how many series are held."""
        with self._lock:
            return sum(len(f) for f in self._by_name.values())
