"""MIG: each MIG device of a GPU as its own series set, memory and GPM per instance.

The layout (which MIG devices exist) is listed when MIG mode turns on, every REFRESH seconds
after (instances can be created and destroyed without a mode change), and again as soon as a
MIG device's handle stops answering.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pynvml import NVMLError

from agent.nvml import NOT_FOUND, Device, ask, classify, text
from agent.samplers.gpu_gpm import Gpm
from agent.store import Labels, MetricInfo, Sample

log = logging.getLogger(__name__)
NO_INSTANCE = 0xFFFFFFFF  # a process's gpuInstanceId with MIG off
REFRESH = 30.0

METRICS = {
    "gpu_mig_mode": MetricInfo("gauge", "1 while the GPU is in MIG mode."),
    "gpu_mig_info": MetricInfo("gauge", "A MIG device of a GPU and its UUID; always 1."),
    "gpu_mig_memory_used_bytes": MetricInfo("gauge", "Memory in use in a MIG instance."),
    "gpu_mig_memory_total_bytes": MetricInfo("gauge", "Memory of a MIG instance."),
}


@dataclass(frozen=True)
class MigDevice:
    """One MIG device: its slot, handle, UUID, GPU and compute instance, and profile."""

    slot: int
    handle: Any
    uuid: str
    gi: int
    ci: int
    profile: str  # 3g.40gb...

    def labels(self, gpu: Device) -> Labels:
        """Return the instance's labels: its GPU's index and UUID, instance ids and profile."""
        parent = dict(gpu.labels)
        return (("gpu", parent["gpu"]), ("gpu_uuid", parent["uuid"]),
                ("mig_ci", str(self.ci)), ("mig_gi", str(self.gi)),
                ("mig_profile", self.profile))  # fmt: skip


def profile_of(name: str) -> str:
    """Return the profile from a MIG device's name ("NVIDIA H100 80GB HBM3 MIG 3g.40gb")."""
    head, sep, profile = name.rpartition(" MIG ")
    return profile.strip() if sep and head else "unknown"


def mig_devices(nvml: Any, handle: Any) -> tuple[MigDevice, ...]:
    """List the MIG devices a GPU has now; none when MIG is off or unsupported."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle) if current else 0
    except NVMLError:
        return ()
    found = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            found.append(MigDevice(slot, mig, text(nvml.nvmlDeviceGetUUID(mig)),
                                   int(nvml.nvmlDeviceGetGpuInstanceId(mig)),
                                   int(nvml.nvmlDeviceGetComputeInstanceId(mig)),
                                   profile_of(text(nvml.nvmlDeviceGetName(mig)))))  # fmt: skip
        except NVMLError as exc:
            if exc.value != NOT_FOUND and not isinstance(classify(exc), LookupError):
                raise classify(exc) from exc
    return tuple(found)


class MigReader:
    """MIG mode and MIG devices of the GPUs of one NVML session."""

    def __init__(self, nvml: Any, gpm: Gpm) -> None:
        self.nvml, self.gpm = nvml, gpm
        self.layouts: dict[int, tuple[float, tuple[MigDevice, ...]]] = {}
        self.modes: dict[int, bool] = {}

    def instances(self, dev: Device) -> tuple[MigDevice, ...]:
        """Return the GPU's MIG devices as last listed (none with MIG off)."""
        return self.layouts.get(dev.index, (0.0, ()))[1]

    def read(self, dev: Device) -> list[Sample]:
        """gpu_mig_mode and every MIG device's series; nothing where MIG is unsupported."""
        mode = ask(dev, "mig_mode", self.nvml.nvmlDeviceGetMigMode, dev.handle)
        if mode is None:
            return []
        if self.modes.setdefault(dev.index, bool(mode[0])) != bool(mode[0]):
            log.info("GPU %d: MIG mode %s", dev.index, "on" if mode[0] else "off")
            self.modes[dev.index] = bool(mode[0])
            dev.unsupported.clear()  # what a mode refuses (utilization in MIG mode) may come back
        if not mode[0]:
            self.layouts.pop(dev.index, None)
            return [Sample("gpu_mig_mode", 0.0, dev.labels)]
        listed_at, layout = self.layouts.get(dev.index, (0.0, ()))
        if time.monotonic() - listed_at > REFRESH:
            layout = mig_devices(self.nvml, dev.handle)
            self.layouts[dev.index] = (time.monotonic(), layout)
        out = [Sample("gpu_mig_mode", 1.0, dev.labels)]
        for mig in layout:
            out += self._instance(dev, mig)
        return out

    def _instance(self, dev: Device, mig: MigDevice) -> list[Sample]:
        labels = mig.labels(dev)
        out = [Sample("gpu_mig_info", 1.0, tuple(sorted((*labels, ("mig_uuid", mig.uuid)))))]
        try:
            mem = self.nvml.nvmlDeviceGetMemoryInfo(mig.handle)
        except NVMLError as exc:
            if not isinstance(classify(exc), LookupError):
                raise classify(exc) from exc
            self.layouts.pop(dev.index, None)  # the instance is gone: list again next round
            return out
        out.append(Sample("gpu_mig_memory_used_bytes", float(mem.used), labels))
        out.append(Sample("gpu_mig_memory_total_bytes", float(mem.total), labels))
        return out + self.gpm.instance(dev, mig.gi, labels)

    def process_labels(self, dev: Device, gi: int) -> Labels:
        """Return the mig_gi, mig_ci and mig_profile labels of a process in GPU instance `gi`."""
        if gi == NO_INSTANCE:
            return ()
        for mig in self.instances(dev):
            if mig.gi == gi:
                return (("mig_ci", str(mig.ci)), ("mig_gi", str(gi)), ("mig_profile", mig.profile))
        return (("mig_gi", str(gi)),)
