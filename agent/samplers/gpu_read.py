"""One GPU's whole read for a round: fields, GPM, MIG devices and processes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import time as wall
from typing import Any, ClassVar

from agent.nvml import Device, ask
from agent.samplers.gpu_fields import SLOW_EVERY, SLOW_READERS, read_gpu
from agent.samplers.gpu_gpm import Gpm
from agent.samplers.gpu_mig import NO_INSTANCE, MigReader
from agent.store import Labels, MetricInfo, Sample


@dataclass(frozen=True)
class Usage:
    """GPU memory one process holds, and the MIG instance it runs in (empty with MIG off)."""

    pid: int
    used: float
    mig: Labels = ()


GpuRead = tuple[list[Sample], list[Usage]]
_SOURCE = {"gpu_sm_active_ratio": (("source", "sm_active"),),
           "gpu_utilization_ratio": (("source", "utilization"),)}  # fmt: skip


def saturation(readings: list[Sample], dev: Device, gpm: bool) -> list[Sample]:
    """How busy the GPU is: SM activity where GPM gives it, else the share of time a kernel ran.

    Utilization reads 100 % while one kernel (a stuck NCCL all-reduce) holds a single SM; SM
    activity does not. Where GPM is supported but has no reading yet, nothing rather than the
    other source, so the series never switches source.
    """
    name = "gpu_sm_active_ratio" if gpm else "gpu_utilization_ratio"
    for s in readings:
        if s.name == name and s.labels == dev.labels:
            return [Sample("gpu_saturation_ratio", s.value, dev.labelled(_SOURCE[name]))]
    return []


class GpuReader:
    """Reads GPUs of one NVML session; holds what spans rounds (GPM samples, MIG layouts)."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml
        self.gpm = Gpm(nvml)
        self.mig = MigReader(nvml, self.gpm)
        # GPU -> (the SLOW_EVERY period read in, its seldom-changing fields), for the slow sampler
        self.slow: dict[int, tuple[int, list[Sample]]] = {}

    def read(self, dev: Device) -> GpuRead:
        """Everything read from one GPU; raises GpuLost or NvmlDown, never for an absent field."""
        readings = read_gpu(self.nvml, dev)
        self._read_slow(dev)
        readings += self.mig.read(dev)
        readings += self.gpm.gpu(dev, split=bool(self.mig.instances(dev)))
        readings += saturation(readings, dev, self.gpm.supported.get(dev.index, False))
        procs = ask(dev, "processes", self.nvml.nvmlDeviceGetComputeRunningProcesses, dev.handle)
        usage = [
            Usage(int(p.pid), float(p.usedGpuMemory),
                  self.mig.process_labels(dev, getattr(p, "gpuInstanceId", NO_INSTANCE)))
            for p in procs or () if p.usedGpuMemory is not None
        ]  # fmt: skip
        return readings, usage

    def _read_slow(self, dev: Device) -> None:
        """Read the seldom-changing fields once in each SLOW_EVERY of the wall clock.

        The slow sampler reports them on the same grid, right after this round's read: what it
        reports was read in the same round.
        """
        period = int(wall() // SLOW_EVERY)
        if self.slow.get(dev.index, (None, []))[0] != period:
            self.slow[dev.index] = (period, read_gpu(self.nvml, dev, SLOW_READERS))

    def close(self) -> None:
        """Free what NVML allocated for this session."""
        self.gpm.close()


class SlowFields:
    """The GPUs' error counters, limits and HBM temperature, as a sampler of their own.

    The GPU sampler's reads take them every SLOW_EVERY seconds; reported as often, and not every
    round, they are not written into the store again each second unchanged.
    """

    name = "gpu_slow"
    metrics: ClassVar[dict[str, MetricInfo]] = {}  # described with the GPU sampler's
    interval = SLOW_EVERY

    def __init__(self, latest: Callable[[], list[Sample]]) -> None:
        self.latest = latest

    def sample(self, now: float) -> list[Sample]:
        """Return each answering GPU's fields as its latest slow read found them."""
        return self.latest()
