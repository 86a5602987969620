"""A prometheus_client collector for the agent's own metrics (the store renders itself)."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.files import KernelFile
from agent.store import SeriesStore


class SelfCollector(Collector):
    """Exports the agent's build, store and HTTP metrics."""

    def __init__(self, store: SeriesStore, extra: Callable[[], Iterator[Metric]] | None = None):
        self.store = store
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        """Yield the self metrics."""
        yield from self._self_metrics()
        if self.extra:
            yield from self.extra()

    def _self_metrics(self) -> Iterator[Metric]:
        build = Metric("dsagent_build", "Version of the running agent.", "info")
        build.add_sample("dsagent_build_info", {"version": __version__}, 1.0)
        yield build
        series = Metric("dsagent_store_series", "Series held in the store.", "gauge")
        series.add_sample("dsagent_store_series", {}, self.store.series_count())
        yield series
        stats = self.store.stats
        for key, value, text in (
            (
                "out_of_order",
                stats.out_of_order,
                "Samples refused for being older than the newest.",
            ),
            ("evicted", stats.evicted, "Series dropped after a retention without samples."),
        ):
            family = Metric(f"dsagent_store_{key}", text, "counter")
            family.add_sample(f"dsagent_store_{key}_total", {}, value)
            yield family


class ProcessMetrics(ProcessCollector):
    """prometheus_client's process_* metrics, with /proc/self/stat kept open between scrapes.

    Its collector opened /proc/self/stat and /proc/self/limits on every scrape; the open-file
    limit comes from getrlimit here. The names, help and values are its own.
    """

    def __init__(self) -> None:
        super().__init__(registry=None)
        self._stat = KernelFile(Path("/proc/self/stat"))

    def collect(self) -> Iterable[Metric]:
        """Yield memory, start time, CPU and file descriptors of this process."""
        if not self._btime:
            return []
        try:
            parts = self._stat.read().rpartition(")")[2].split()
            open_fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            return []
        ticks = self._ticks
        return [
            GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                              value=float(parts[20])),
            GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                              value=float(parts[21]) * self._pagesize),
            GaugeMetricFamily("process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.",
                              value=float(parts[19]) / ticks + self._btime),
            CounterMetricFamily("process_cpu_seconds_total",
                                "Total user and system CPU time spent in seconds.",
                                value=(float(parts[11]) + float(parts[12])) / ticks),
            GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", open_fds),
            GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.",
                              value=float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])),
        ]  # fmt: skip
