"""Helpers shared by the benchmarks: free ports, waiting, process stats, percentiles."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Sequence

import psutil
import requests


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until check() holds, else raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out waiting for {what}")


def cpu_seconds(proc: psutil.Process) -> float:
    """Return user + system CPU seconds of a process (counted in 10 ms ticks)."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Return each live thread's CPU time in ns, from /proc/PID/task/TID/schedstat."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return out


class CpuClock:
    """CPU seconds a process used since the clock was made.

    Precise to the ns from each thread's schedstat, where every thread alive at the start is
    still alive at the end and the sum agrees with the process's ticks to two of them (a thread
    that ended takes its time with it). Otherwise, or without schedstat, it falls back to
    psutil's 10 ms ticks: over 60 s, a step of 0.017 % of a core.
    """

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.precise = False
        self._ticks = cpu_seconds(self.proc)
        self._threads = self._read_threads()

    def _read_threads(self) -> dict[int, int]:
        try:
            return thread_cpu_ns(self.proc.pid)
        except OSError:
            return {}

    def seconds(self) -> float:
        """Return the CPU seconds used since the start."""
        ticks = cpu_seconds(self.proc) - self._ticks
        now = self._read_threads()
        used = (sum(now.values()) - sum(self._threads.values())) / 1e9
        self.precise = (
            bool(self._threads) and self._threads.keys() <= now.keys() and abs(ticks - used) <= 0.02
        )
        return used if self.precise else ticks


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
