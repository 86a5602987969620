"""The series store: the one hub that samplers write to and every reader reads from."""

from __future__ import annotations

import itertools
import threading
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from agent.ring import Ring

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


def sample(name: str, value: float, /, **labels: object) -> Sample:
    """Build a Sample with labels given as keyword arguments (any label name, `name` too)."""
    if len(labels) == 1:  # the common case, without a sort
        for k, v in labels.items():
            return Sample(name, float(value), ((k, str(v)),))
    return Sample(name, float(value), tuple(sorted([(k, str(v)) for k, v in labels.items()])))


class Source:
    """One sampler, as the store sees it: when its latest run was, and the series it wrote."""

    __slots__ = ("last", "order")

    def __init__(self) -> None:
        self.last = float("-inf")
        self.order: list[Series] = []  # the latest run's series, in the order it gave them


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
        self._shown: dict[str, int] = {}  # bumped when what a scrape shows of a family changes
        self._sorted: list[str] | None = None  # the family names in order, until one comes or goes
        self._described = 0  # bumped when a metric's type or help changes
        self._count = 0  # series held: every scrape reports it
        self._selected: dict[Hashable, tuple[int, list[Series]]] = {}

    def describe(self, infos: Mapping[str, MetricInfo]) -> None:
        """Register the type and help of metric names."""
        with self._lock:
            if not infos.items() <= self._meta.items():  # the loop re-describes every run
                self._meta.update(infos)
                self._described += 1

    def info(self, name: str) -> MetricInfo:
        """Return what is known of a metric name (an untyped gauge if nothing)."""
        info = self._meta.get(name)  # not .get(name, default): every scrape asks every family
        return info if info is not None else MetricInfo("gauge", name.replace("_", " "))

    def ingest(self, source: str, samples: Iterable[Sample], ts: float) -> None:
        """Append one run's samples; the source's series missing from it turn stale.

        A sampler gives its series in the same order run after run: the series at the same
        place last run is checked first, and looked up by name and labels only if it differs.
        """
        with self._lock:
            src = self._sources.get(source) or self._sources.setdefault(source, Source())
            src.last = ts  # a series whose newest sample is older than this is stale
            last, order, shown = src.order, [], self._shown
            known, same = len(last), True
            for k, s in enumerate(samples):
                series = last[k] if k < known else None
                if series is None or series.labels != s.labels or series.name != s.name:
                    series, same = self._find(s.name, s.labels, src), False
                order.append(series)
                ring = series.ring
                if s.value != ring.latest:  # NaN never equals: shown as moved, which is safe
                    shown[s.name] = shown.get(s.name, 0) + 1
                if not ring.append(ts, s.value):
                    self.stats.out_of_order += 1
            if not same or len(order) != known:  # a series came, went or moved: which are stale?
                for series in itertools.chain(last, order):
                    shown[series.name] = shown.get(series.name, 0) + 1
            src.order = order
            if ts - self._last_evict >= 60.0:
                self._evict(ts)

    def _find(self, name: str, labels: Labels, source: Source) -> Series:
        family = self._by_name.get(name)
        series = family.get(labels) if family is not None else None
        return series if series is not None else self._series(name, labels, source)

    def _series(self, name: str, labels: Labels, source: Source) -> Series:
        if name not in self._by_name:
            self._sorted = None
        family = self._by_name.setdefault(name, {})
        series = family.get(labels)
        if series is None:
            series = family[labels] = Series(name, labels, source, Ring(self.capacity))
            self._versions[name] = self._versions.get(name, 0) + 1
            self._shown[name] = self._shown.get(name, 0) + 1
            self._count += 1
        return series

    def _evict(self, now: float) -> None:
        """Drop series with no sample inside the retention, so churn cannot grow memory."""
        self._last_evict = now
        horizon = now - self.retention
        gone: set[int] = set()
        for name, family in list(self._by_name.items()):
            for labels, series in list(family.items()):
                newest = series.ring.last()
                if newest is None or newest[0] < horizon:
                    del family[labels]
                    gone.add(id(series))
                    self._versions[name] = self._versions.get(name, 0) + 1
                    self._shown[name] = self._shown.get(name, 0) + 1
                    self.stats.evicted += 1
                    self._count -= 1
            if not family:
                del self._by_name[name]
                self._sorted = None
        if gone:  # no run's order may hold an evicted series (its next run is then told apart)
            for src in self._sources.values():
                src.order = [series for series in src.order if id(series) not in gone]

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
        with self._lock:
            families = [(name, _live(self._by_name[name])) for name in sorted(self._by_name)]
        return [(name, rows) for name, rows in families if rows]

    def shown(self) -> tuple[list[str], list[int], int]:
        """Return the family names in order, a count per family, and a count for type and help.

        A family's count moves whenever live() would show it anew. The list of names is the same
        object until a family comes or goes (never changed in place): a reader may keep it.
        """
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._by_name)
            shown = self._shown
            return self._sorted, [shown[name] for name in self._sorted], self._described

    def rows(self, name: str) -> list[tuple[Series, float]]:
        """Return a family's series that are not stale, with their newest values."""
        with self._lock:
            return _live(self._by_name.get(name, {}))

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
            return self._count


def _live(family: dict[Labels, Series]) -> list[tuple[Series, float]]:
    """Return a family's series that are not stale, with their newest values.

    A series that is not stale holds a sample at least as new as its source's run (Series.stale,
    inlined: this runs for every series on every scrape).
    """
    return [(series, ring.latest) for series in family.values()
            if (ring := series.ring).newest >= series.source.last]  # fmt: skip
