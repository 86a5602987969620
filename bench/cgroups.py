"""CPU time of one process tree from a cgroup of its own: every thread, ended ones included."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

from bench.common import cpu_seconds

V1 = Path("/sys/fs/cgroup/cpuacct")
V2_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))


def _v2_root() -> Path | None:
    return next((root for root in V2_ROOTS if (root / "cgroup.controllers").exists()), None)


class CpuGroup:
    """A cpuacct (v1) or cgroup v2 group for one process; ticks where neither can be made."""

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        self.v2 = False
        self.pid: int | None = None
        for base, v2 in ((V1, False), (_v2_root(), True)):
            if base is None or not base.exists():
                continue
            path = base / f"dsbench-{name}-{os.getpid()}"
            try:
                path.mkdir(exist_ok=True)
            except OSError:
                continue
            self.path, self.v2 = path, v2
            break

    @staticmethod
    def how() -> str:
        """Say where CPU time comes from on this machine."""
        probe = CpuGroup("probe")
        text = "ticks per process (no cgroup could be made)"
        if probe.path is not None:
            text = "cgroup v2 cpu.stat" if probe.v2 else "cpuacct.usage (cgroup v1)"
        probe.remove()
        return text

    def enter(self, pid: int) -> None:
        """Put a process, every thread of it, into the group."""
        self.pid = pid
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(pid))

    def seconds(self) -> float:
        """Return the CPU seconds the group has used (or the process's ticks)."""
        if self.path is None:
            return self._ticks()
        if self.v2:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def _ticks(self) -> float:
        return 0.0 if self.pid is None else cpu_seconds(psutil.Process(self.pid))

    def remove(self) -> None:
        """Remove the group once its processes are gone."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
