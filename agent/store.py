"""The series store: the one hub that samplers write to and every reader reads from."""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: a series' identity
LabelMap = Mapping[str, str]  # the same labels as a mapping, as notifications carry them
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
        n = self._len
        if value != self.latest or not n:
            self._since = ts
        self.newest, self.latest = ts, value
        times, vals, head = self._ts, self._vals, self._head
        cap = len(times)
        i = head + n - cap if head + n >= cap else head + n
        if n < cap:
            self._len = n + 1
        else:
            self._head = 0 if head + 1 == cap else head + 1
        vals[i] = value
        if vals[i] != value and not math.isnan(value):  # NaN is NaN in either width
            self._vals = array("d", vals)
            self._vals[i] = value
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

    def between(self, start: float, end: float) -> tuple[array[float], array[float]]:
        """Return the timestamps and values with start <= ts <= end, oldest first."""
        lo, hi = self._find(start, False), self._find(end, True)
        return self._times(lo, hi), self._slice(self._vals, lo, hi)

    def values(self, start: float, end: float) -> array[float]:
        """Return the values with start <= ts <= end, oldest first (no timestamps to build)."""
        return self._slice(self._vals, self._find(start, False), self._find(end, True))

    def edges(self, start: float, end: float) -> tuple[tuple[float, float], array[float]]:
        """Return the first and last timestamps with start <= ts <= end, and all the values.

        What rate() needs: the timestamps in between are not built.
        """
        lo, hi = self._find(start, False), self._find(end, True)
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


class Source:
    """One sampler, as the store sees it: when its latest run was, and what it writes."""

    __slots__ = ("families", "last")

    def __init__(self) -> None:
        self.last = float("-inf")
        self.families: set[str] = set()


@dataclass(eq=False, slots=True)
class Series:
    """One labelled series: its ring buffer and which sampler owns it."""

    name: str
    labels: Labels
    source: Source
    ring: Ring

    @property
    def stale(self) -> bool:
        """True when the series was missing from its sampler's latest run."""
        return self.ring.newest < self.source.last


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
        self._sources: dict[str, Source] = {}
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
            src = self._sources.get(source) or self._sources.setdefault(source, Source())
            src.last = ts  # a series whose newest sample is older than this is stale
            by_name = self._by_name
            for s in samples:
                family = by_name.get(s.name)
                series = family.get(s.labels) if family is not None else None
                if series is None:
                    series = self._series(s.name, s.labels, src)
                if not series.ring.append(ts, s.value):
                    self.stats.out_of_order += 1
            if ts - self._last_evict >= 60.0:
                self._evict(ts)

    def _series(self, name: str, labels: Labels, source: Source) -> Series:
        source.families.add(name)
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
                    self.stats.evicted += 1
            if not family:
                del self._by_name[name]
        for src in self._sources.values():
            src.families &= self._by_name.keys()

    def families_of(self, source: str) -> frozenset[str]:
        """Return the metric names a source (a sampler) writes."""
        with self._lock:
            src = self._sources.get(source)
            return frozenset(src.families) if src is not None else frozenset()

    def feeders(self, names: Iterable[str]) -> dict[str, float]:
        """Return the sources that write any of these names, with when each last ran."""
        wanted = set(names)
        with self._lock:
            return {
                n: s.last for n, s in self._sources.items() if not wanted.isdisjoint(s.families)
            }

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

    def values(self, series: Series, start: float, end: float) -> array[float]:
        """Return a series' values inside [start, end], without their timestamps."""
        with self._lock:
            return series.ring.values(start, end)

    def edges(self, series: Series, start: float,
              end: float) -> tuple[tuple[float, float], array[float]]:  # fmt: skip
        """Return a series' first and last timestamps inside [start, end], and its values."""
        with self._lock:
            return series.ring.edges(start, end)

    def steady(self, series: Series, start: float, end: float) -> tuple[int, float] | None:
        """Return (1 or 2 samples, value) if a series held one value throughout [start, end]."""
        with self._lock:
            return series.ring.steady(start, end)

    def newest(self, series: Series, start: float, end: float) -> tuple[float, float] | None:
        """Return a series' newest sample inside [start, end]."""
        with self._lock:
            return series.ring.newest_between(start, end)

    def live(self) -> list[tuple[str, list[tuple[Series, float]]]]:
        """Return each family's series that are not stale, with their newest values, by name."""
        out = []
        with self._lock:
            for name in sorted(self._by_name):
                # A series that is not stale holds a sample at least as new as its source's run
                # (Series.stale, inlined: this runs for every series on every scrape).
                rows = [
                    (series, ring.latest)
                    for series in self._by_name[name].values()
                    if (ring := series.ring).newest >= series.source.last
                ]
                if rows:
                    out.append((name, rows))
        return out

    def current(self) -> Iterator[tuple[str, Labels, float]]:
        """Yield (name, labels, newest value) of every series that is not stale."""
        for name, rows in self.live():
            for series, value in rows:
                yield name, series.labels, value

    def names(self) -> list[str]:
        """Return every metric name held."""
        with self._lock:
            return sorted(self._by_name)

    def series_count(self) -> int:
        """Return how many series are held."""
        with self._lock:
            return sum(len(f) for f in self._by_name.values())
