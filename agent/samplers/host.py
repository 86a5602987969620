"""Host sampler: CPU utilization, load and memory from /proc."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.files import KernelFiles
from agent.samplers.counters import CounterDeltas, ratio
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "host_cpu_utilization_ratio": MetricInfo(
        "gauge", "Share of CPU time not idle over the interval."
    ),
    "host_cpu_iowait_ratio": MetricInfo("gauge", "Share of CPU time idle waiting on I/O."),
    "host_load1": MetricInfo("gauge", "1-minute load average."),
    "host_load5": MetricInfo("gauge", "5-minute load average."),
    "host_load15": MetricInfo("gauge", "15-minute load average."),
    "host_memory_total_bytes": MetricInfo("gauge", "Physical memory."),
    "host_memory_available_bytes": MetricInfo("gauge", "Memory available without swapping."),
    "host_memory_used_bytes": MetricInfo("gauge", "Memory in use: total minus available."),
    "host_memory_used_ratio": MetricInfo("gauge", "Memory in use as a share of total."),
    "host_swap_total_bytes": MetricInfo("gauge", "Swap space."),
    "host_swap_used_bytes": MetricInfo("gauge", "Swap in use."),
    "host_swap_used_ratio": MetricInfo("gauge", "Swap in use as a share of swap space."),
}

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def parse_stat_cpu(text: str) -> tuple[float, ...] | None:
    """Return the aggregate cpu line's first eight jiffy counters, or None if absent."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                values = tuple(float(v) for v in fields[1 : 1 + len(CPU_FIELDS)])
            except ValueError:
                return None
            return values if len(values) >= 5 else None
    return None


# The /proc/meminfo keys memory_samples reads (of about fifty).
MEMORY_KEYS = frozenset({"MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached",
                         "SwapTotal", "SwapFree"})  # fmt: skip


def parse_meminfo(text: str, keys: frozenset[str] | None = None) -> dict[str, float]:
    """Return /proc/meminfo (the `keys`, if given) as bytes per key; bad lines are skipped."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        key = key.strip()
        if keys is not None and key not in keys:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        out[key] = value * 1024 if fields[1:2] == ["kB"] else value
    return out


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    """Return the three load averages, or None if the text is not a loadavg line."""
    fields = text.split()
    try:
        return float(fields[0]), float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        return None


def memory_samples(mem: dict[str, float]) -> Iterator[Sample]:
    """Derive memory and swap samples; absent inputs give absent outputs."""
    total = mem.get("MemTotal")
    avail = mem.get("MemAvailable")
    if avail is None and {"MemFree", "Buffers", "Cached"} <= mem.keys():
        avail = mem["MemFree"] + mem["Buffers"] + mem["Cached"]  # kernels before 3.14
    if total and avail is not None:
        yield sample("host_memory_total_bytes", total)
        yield sample("host_memory_available_bytes", avail)
        yield sample("host_memory_used_bytes", total - avail)
        yield sample("host_memory_used_ratio", (total - avail) / total)
    swap, free = mem.get("SwapTotal"), mem.get("SwapFree")
    if swap is not None and free is not None:
        yield sample("host_swap_total_bytes", swap)
        yield sample("host_swap_used_bytes", swap - free)
        if swap > 0:
            yield sample("host_swap_used_ratio", (swap - free) / swap)


class HostSampler:
    """CPU, load and memory of the whole node."""

    name = "host"
    metrics = METRICS

    def __init__(self, proc_root: Path) -> None:
        self.proc = proc_root
        self._cpu: CounterDeltas[str] = CounterDeltas()
        self._files = KernelFiles()

    def sample(self, now: float) -> Iterator[Sample]:
        """Read /proc/stat, /proc/loadavg and /proc/meminfo."""
        cpu = parse_stat_cpu(self._files.read(self.proc, "stat"))
        _, deltas = self._cpu.update(now, {"cpu": cpu} if cpu else {})
        if "cpu" in deltas:
            d = deltas["cpu"]
            total = sum(d)
            yield sample("host_cpu_utilization_ratio", ratio(total - d[3] - d[4], total))
            yield sample("host_cpu_iowait_ratio", ratio(d[4], total))
        load = parse_loadavg(self._files.read(self.proc, "loadavg"))
        if load:
            for minutes, value in zip((1, 5, 15), load, strict=True):
                yield sample(f"host_load{minutes}", value)
        yield from memory_samples(
            parse_meminfo(self._files.read(self.proc, "meminfo"), MEMORY_KEYS)
        )

    def close(self) -> None:
        """Close the kept files."""
        self._files.close()


def build(cfg: Config) -> HostSampler:
    """Build the host sampler."""
    return HostSampler(cfg.host.proc_root)
