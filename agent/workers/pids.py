"""Which configured inference worker a process belongs to, and what it is called."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent.config import WorkerConfig

RECHECK = 10.0  # seconds a pid's name is trusted before it is read again


def unit_of(cgroup_text: str) -> str | None:
    """Return the systemd unit in a /proc/PID/cgroup text (e.g. 'vllm.service'), if any."""
    for line in cgroup_text.splitlines():
        path = line.rsplit(":", 1)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


@dataclass(slots=True)
class _Seen:
    """A pid as last looked at: its process (None if gone or hidden), name and worker."""

    checked: float
    proc: psutil.Process | None
    name: str
    worker: str | None


class WorkerMap:
    """Maps pids to worker names by configured pids, their descendants, or systemd unit."""

    def __init__(self, workers: Sequence[WorkerConfig], proc_root: Path = Path("/proc")) -> None:
        self.workers = list(workers)
        self.proc = proc_root
        self._cache: dict[int, _Seen] = {}

    def describe(self, pid: int) -> tuple[str, str | None]:
        """Return (process name, worker name or None); a vanished pid is named '?'.

        A process's worker is found once: walking its ancestors cost half a millisecond, every
        GPU process every RECHECK. After that only its name is read again, and whether the pid
        is still the same process (its start time): a reused pid is looked up afresh.
        """
        seen = self._cache.get(pid)
        now = time.monotonic()
        if seen is not None and now - seen.checked < RECHECK:
            return seen.name, seen.worker
        try:
            if seen is not None and seen.proc is not None and seen.proc.is_running():
                seen.checked, seen.name = now, seen.proc.name()
                return seen.name, seen.worker
            proc = psutil.Process(pid)
            seen = _Seen(now, proc, proc.name(), self._worker(proc))
        except psutil.Error:  # gone, or not ours to see (another pid namespace): cached too
            seen = _Seen(now, None, "?", None)
        self._cache[pid] = seen
        return seen.name, seen.worker

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
