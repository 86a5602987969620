"""Join the kubelet's device IDs to the GPUs NVML lists: which container holds which GPU.

The NVIDIA device plugin names a device by GPU UUID (`GPU-…`), MIG UUID (`MIG-…`), index
(`0`, or `0:1` for MIG device 1 of GPU 0, with DEVICE_ID_STRATEGY=index), or as GKE's plugin
does, `nvidia0` (the minor number). A time-slicing replica appends `::N` to any of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.k8s.podresources import Allocation, Holder
from agent.store import Labels, Sample

GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")  # .shared: time-slicing renamed
MIG_PREFIX = "nvidia.com/mig-"  # nvidia.com/mig-3g.40gb: the mixed MIG strategy


@dataclass(frozen=True)
class Mig:
    """One MIG device of a GPU."""

    index: int  # its slot, as nvmlDeviceGetMigDeviceHandleByIndex numbers it
    uuid: str


@dataclass(frozen=True)
class Gpu:
    """What the join needs to know of one GPU."""

    index: int
    uuid: str
    labels: Labels
    minor: int | None = None
    migs: tuple[Mig, ...] = ()


@dataclass
class Attribution:
    """The join's result: holders per GPU, one info series per (device, container)."""

    holders: dict[int, set[Holder]] = field(default_factory=dict)
    info: list[Sample] = field(default_factory=list)
    unmatched: int = 0  # GPU device IDs no GPU here answers to

    def labels(self, index: int) -> Labels:
        """Return the pod labels a GPU's series carry: only when one container holds all of it."""
        held = self.holders.get(index, ())
        return next(iter(held)).labels() if len(held) == 1 else ()


def _find(device_id: str, gpus: list[Gpu]) -> tuple[Gpu, Mig | None] | None:
    """Return the GPU (and MIG device) an ID names, or None."""
    base = device_id.split("::", 1)[0]
    for gpu in gpus:
        if base == gpu.uuid or base == str(gpu.index) or base == f"nvidia{gpu.minor}":
            return gpu, None
        for mig in gpu.migs:
            if base in (mig.uuid, f"{gpu.index}:{mig.index}"):
                return gpu, mig
    return None


def wanted(resource: str) -> bool:
    """Tell whether a resource is a GPU or a MIG device."""
    return resource in GPU_RESOURCES or resource.startswith(MIG_PREFIX)


def attribute(allocations: Iterable[Allocation], gpus: list[Gpu]) -> Attribution:
    """Join every GPU and MIG allocation to the GPU it names."""
    out = Attribution()
    seen: set[tuple[str, Holder]] = set()
    for a in sorted((a for a in allocations if wanted(a.resource)), key=lambda a: a.holder):
        found = _find(a.device_id, gpus)
        if found is None:
            out.unmatched += 1
            continue
        gpu, mig = found
        out.holders.setdefault(gpu.index, set()).add(a.holder)
        extra = {"resource": a.resource}
        if mig is not None:
            extra |= {"mig_uuid": mig.uuid, "mig_profile": a.resource.removeprefix(MIG_PREFIX)}
        key = (mig.uuid if mig else gpu.uuid, a.holder)
        if key in seen:  # several time-slicing replicas of one GPU in one container
            continue
        seen.add(key)
        labels = dict(gpu.labels) | dict(a.holder.labels()) | extra
        out.info.append(Sample("gpu_pod_info", 1.0, tuple(sorted(labels.items()))))
    return out
