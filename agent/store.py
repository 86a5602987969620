"""The series store: the one hub that samplers write to and every reader reads from."""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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

    def __getitem__(self, i: int) -> float:
        """Return the i-th oldest timestamp, so bisect can search the ring."""
        return self._ts[(self._head + i) % len(self._ts)]

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

    def between(self, start: float, end: float) -> tuple[list[float], list[float]]:
        """Return the timestamps and values with start <= ts <= end, oldest first."""
        lo = bisect.bisect_left(self, start)
        hi = bisect.bisect_right(self, end)
        cap = len(self._ts)
        idx = [(self._head + i) % cap for i in range(lo, hi)]
        return [self._ts[i] for i in idx], [self._vals[i] for i in idx]


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
    extra: dict[str, int] = field(default_factory=dict)


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
                    self._by_source.get(series.source, set()).discard(series)
                    self.stats.evicted += 1
            if not family:
                del self._by_name[name]

    def select(self, name: str, match: Callable[[Labels], bool] | None = None) -> list[Series]:
        """Return the series of a name whose labels pass the matcher."""
        with self._lock:
            family = list(self._by_name.get(name, {}).values())
        return [s for s in family if match is None or match(s.labels)]

    def window(self, series: Series, start: float, end: float) -> tuple[list[float], list[float]]:
        """Return a series' samples inside [start, end]."""
        with self._lock:
            return series.ring.between(start, end)

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
