"""Which configured inference worker a process belongs to, and what it is called."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from agent.config import WorkerConfig

RECHECK = 10.0  # seconds a pid's name and worker are trusted before looking again


def unit_of(cgroup_text: str) -> str | None:
    """Return the systemd unit in a /proc/PID/cgroup text (e.g. 'vllm.service'), if any."""
    for line in cgroup_text.splitlines():
        path = line.rsplit(":", 1)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


class WorkerMap:
    """Maps pids to worker names by configured pids, their descendants, or systemd unit."""

    def __init__(self, workers: Sequence[WorkerConfig], proc_root: Path = Path("/proc")) -> None:
        self.workers = list(workers)
        self.proc = proc_root
        self._cache: dict[int, tuple[float, str, str | None]] = {}  # pid -> (checked, name, worker)

    def describe(self, pid: int) -> tuple[str, str | None]:
        """Return (process name, worker name or None); a vanished pid is named '?'."""
        cached = self._cache.get(pid)
        now = time.monotonic()
        if cached and now - cached[0] < RECHECK:
            return cached[1], cached[2]
        try:
            proc = psutil.Process(pid)  # a new lookup also notices a reused pid
            name, worker = proc.name(), self._worker(proc)
        except psutil.Error:  # gone, or not ours to see (another pid namespace): cached too
            name, worker = "?", None
        self._cache[pid] = (now, name, worker)
        return name, worker

    def _worker(self, proc: psutil.Process) -> str | None:
        lineage = {proc.pid, *(p.pid for p in proc.parents())}
        for w in self.workers:
            if lineage & set(w.pids):
                return w.name
        units = {w.unit: w.name for w in self.workers if w.unit}
        if units:
            try:
                unit = unit_of((self.proc / str(proc.pid) / "cgroup").read_text())
            except OSError:
                return None
            return units.get(unit) if unit else None
        return None

    def forget_except(self, pids: set[int]) -> None:
        """Drop cached pids not seen any more, so the cache stays bounded."""
        for pid in list(self._cache):
            if pid not in pids:
                del self._cache[pid]
