"""Helpers shared by the benchmarks: free ports, waiting, process stats, percentiles."""

from __future__ import annotations

import math
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


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
