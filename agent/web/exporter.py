"""The agent's own metrics, read at each scrape: build, store, HTTP and process_* families."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

from agent import __version__
from agent.files import KernelFile
from agent.store import SeriesStore
from agent.web.render import Family, family


class SelfMetrics:
    """The agent's build, store and HTTP families (`extra` adds the server's)."""

    def __init__(self, store: SeriesStore, extra: Callable[[], Iterator[Family]] | None = None):
        self.store = store
        self.extra = extra

    def families(self) -> Iterator[Family]:
        """Yield the self metrics."""
        yield Family("dsagent_build", "info", "Version of the running agent.",
                     [((("version", __version__),), 1.0)])  # fmt: skip
        yield family("dsagent_store_series", "gauge", "Series held in the store.",
                     self.store.series_count())  # fmt: skip
        stats = self.store.stats
        yield family("dsagent_store_out_of_order", "counter",
                     "Samples refused for being older than the newest.",
                     stats.out_of_order)  # fmt: skip
        yield family("dsagent_store_evicted", "counter",
                     "Series dropped after a retention without samples.",
                     stats.evicted)  # fmt: skip
        if self.extra:
            yield from self.extra()


class ProcessMetrics:
    """prometheus_client's process_* metrics, with /proc/self/stat kept open between scrapes.

    Its collector opened /proc/self/stat and /proc/self/limits on every scrape; the open-file
    limit comes from getrlimit here. The names, help and values are its own (a test compares);
    nothing of its internals is used, so another prometheus_client cannot break the scrape.
    """

    def __init__(self) -> None:
        self._stat = KernelFile(Path("/proc/self/stat"))
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = resource.getpagesize()
        self._btime = _boot_time()

    def families(self) -> list[Family]:
        """Return memory, start time, CPU and file descriptors of this process."""
        if not self._btime:
            return []
        try:
            parts = self._stat.read().rpartition(")")[2].split()
            open_fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            return []
        ticks = self._ticks
        return [
            family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                   float(parts[20])),
            family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                   float(parts[21]) * self._pagesize),
            family("process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.",
                   float(parts[19]) / ticks + self._btime),
            family("process_cpu_seconds", "counter",
                   "Total user and system CPU time spent in seconds.",
                   (float(parts[11]) + float(parts[12])) / ticks),
            family("process_open_fds", "gauge", "Number of open file descriptors.", open_fds),
            family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                   float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])),
        ]  # fmt: skip


def _boot_time() -> float:
    """Return the boot time from /proc/stat (0.0 where there is none: no process_* families)."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0
