"""Pod labels on GPU series: the kubelet's allocations joined to the GPUs of this session."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pynvml import NVMLError

from agent.k8s.attribution import Attribution, Gpu, Mig, attribute
from agent.k8s.podresources import PodResources
from agent.nvml import Device, GpuLost, NvmlDown
from agent.samplers.gpu_mig import mig_devices
from agent.store import Labels, MetricInfo, Sample

log = logging.getLogger(__name__)

METRICS = {
    "gpu_pod_info": MetricInfo(
        "gauge", "1 for each GPU or MIG device and the container it is allocated to."
    ),
    "dsagent_k8s_unmatched_devices": MetricInfo(
        "gauge", "GPU device IDs allocated by the kubelet that match no GPU NVML lists."
    ),
}


def describe(nvml: Any, dev: Device) -> Gpu:
    """Return what the join needs of one GPU: UUID, minor number and MIG devices."""
    try:
        minor: int | None = int(nvml.nvmlDeviceGetMinorNumber(dev.handle))
    except NVMLError:
        minor = None
    labels = dict(dev.labels)
    try:
        migs = tuple(Mig(m.slot, m.uuid) for m in mig_devices(nvml, dev.handle))
    except (GpuLost, NvmlDown):
        migs = ()  # the GPU read says so on its own series
    return Gpu(dev.index, labels["uuid"], dev.labels, minor, migs)


class PodLabels:
    """Puts the holding container on each GPU's series; joins again when the pods change."""

    def __init__(self, source: PodResources) -> None:
        self.source = source
        self.joined: Attribution = Attribution()
        self._version = -1
        self._session: Any = None
        self._relabelled: dict[Labels, Labels] = {}

    def refresh(self, nvml: Any, devices: list[Device]) -> None:
        """Join again if the pod list or the NVML session changed since the last join."""
        if self._version == self.source.version and self._session is nvml:
            return
        self._version, self._session = self.source.version, nvml
        self.joined = attribute(self.source.allocations, [describe(nvml, d) for d in devices])
        self._relabelled.clear()
        if self.joined.unmatched:
            log.warning("%d GPU device IDs from the kubelet match no GPU here",
                        self.joined.unmatched)  # fmt: skip

    def relabel(self, index: int, samples: Iterable[Sample]) -> Iterable[Sample]:
        """Return one GPU's samples, with its container's labels when one container holds it."""
        extra = self.joined.labels(index)
        if not extra:
            return samples
        return [Sample(s.name, s.value, self._with(s.labels, extra)) for s in samples]

    def _with(self, labels: Labels, extra: Labels) -> Labels:
        got = self._relabelled.get(labels)
        if got is None:
            got = self._relabelled[labels] = tuple(sorted({*labels, *extra}))
        return got

    def samples(self) -> list[Sample]:
        """Return one gpu_pod_info per device and container, and the IDs that matched no GPU."""
        return [*self.joined.info, Sample("dsagent_k8s_unmatched_devices",
                                          float(self.joined.unmatched))]  # fmt: skip
