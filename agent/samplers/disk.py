"""Disk sampler: per-device throughput, utilization and average wait per I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.files import KernelFiles
from agent.samplers.counters import CounterDeltas, ratio
from agent.store import MetricInfo, Sample, sample

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size

METRICS = {
    "disk_reads_per_second": MetricInfo("gauge", "Reads completed per second."),
    "disk_writes_per_second": MetricInfo("gauge", "Writes completed per second."),
    "disk_read_bytes_per_second": MetricInfo("gauge", "Bytes read per second."),
    "disk_written_bytes_per_second": MetricInfo("gauge", "Bytes written per second."),
    "disk_utilization_ratio": MetricInfo("gauge", "Share of the interval the device was busy."),
    "disk_io_wait_seconds": MetricInfo(
        "gauge", "Average time an I/O completed in the interval spent queued and served (await)."
    ),
}

# reads, sectors read, ms reading, writes, sectors written, ms writing, ms doing I/O
_FIELDS = (3, 5, 6, 7, 9, 10, 12)


def parse_diskstats(text: str) -> dict[str, tuple[float, ...]]:
    """Return the counters this sampler needs per device; malformed lines are skipped."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 14:
            continue
        try:
            out[fields[2]] = tuple(float(fields[i]) for i in _FIELDS)
        except ValueError:
            continue
    return out


def whole_disks(sys_root: Path) -> set[str] | None:
    """Return the names under /sys/block (whole devices, no partitions), or None if unreadable."""
    try:
        return set(os.listdir(sys_root / "block"))
    except OSError:
        return None


def disk_samples(dev: str, d: tuple[float, ...], dt: float) -> Iterator[Sample]:
    """Turn one device's counter deltas over dt seconds into samples."""
    reads, rsect, rms, writes, wsect, wms, io_ms = d
    yield sample("disk_reads_per_second", reads / dt, device=dev)
    yield sample("disk_writes_per_second", writes / dt, device=dev)
    yield sample("disk_read_bytes_per_second", rsect * SECTOR / dt, device=dev)
    yield sample("disk_written_bytes_per_second", wsect * SECTOR / dt, device=dev)
    yield sample("disk_utilization_ratio", min(io_ms / 1000 / dt, 1.0), device=dev)
    yield sample("disk_io_wait_seconds", ratio(rms + wms, reads + writes) / 1000, device=dev)


class DiskSampler:
    """Block devices from /proc/diskstats, whole devices only."""

    name = "disk"
    metrics = METRICS

    def __init__(self, proc_root: Path, sys_root: Path, exclude: str) -> None:
        self.proc, self.sys = proc_root, sys_root
        self.exclude = re.compile(exclude)
        self._deltas: CounterDeltas[str] = CounterDeltas()
        self._files = KernelFiles()
        self._devices: frozenset[str] = frozenset()  # the devices diskstats listed last run
        self._kept: list[str] = []  # of those, the whole disks not excluded

    def sample(self, now: float) -> Iterator[Sample]:
        """Read /proc/diskstats and yield rates since the previous run."""
        stats = parse_diskstats(self._files.read(self.proc, "diskstats"))
        devices = frozenset(stats)
        if devices != self._devices:  # a device came or went: which are whole disks now?
            disks = whole_disks(self.sys)
            whole = stats if disks is None else [dev for dev in stats if dev in disks]
            self._kept = [dev for dev in whole if not self.exclude.search(dev)]
            self._devices = devices
        dt, deltas = self._deltas.update(now, {dev: stats[dev] for dev in self._kept})
        for dev, d in sorted(deltas.items()):
            yield from disk_samples(dev, d, dt)

    def close(self) -> None:
        """Close the kept files."""
        self._files.close()


def build(cfg: Config) -> DiskSampler:
    """Build the disk sampler."""
    return DiskSampler(cfg.host.proc_root, cfg.host.sys_root, cfg.host.disk_exclude)
