"""Samplers: each measures one thing and yields Samples; `factories()` lists them in order.

A sampler that waits on the network says `blocking = True`: the round loop starts it on a
thread of its own at the round's start and collects it in its turn (agent/loop.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agent.config import Config
from agent.nvml import Loader
from agent.store import MetricInfo, Sample

if TYPE_CHECKING:
    from agent.samplers.gpu_pods import PodLabels
    from agent.workers.energy import EnergyBook


class Sampler(Protocol):
    """What the round loop runs every sample interval (or its own, see `Periodic`)."""

    @property
    def name(self) -> str:
        """The sampler's name, used as its job id and `sampler` label."""
        ...

    @property
    def metrics(self) -> Mapping[str, MetricInfo]:
        """The metric names it yields, with their type and help."""
        ...

    def sample(self, now: float) -> Iterable[Sample]:
        """Measure once; `now` is the wall-clock time of this run."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """A sampler that holds threads or handles to release when it is replaced or stopped."""

    def close(self) -> None:
        """Release what the sampler holds."""
        ...


@runtime_checkable
class Periodic(Protocol):
    """A sampler with an interval of its own (hardware state changes slowly)."""

    name: str
    interval: float


def intervals(samplers: Iterable[object]) -> dict[str, float]:
    """Return the samplers that run on an interval of their own, by name."""
    return {s.name: s.interval for s in samplers if isinstance(s, Periodic)}


def close_all(samplers: Iterable[object]) -> None:
    """Close every sampler that holds something."""
    for s in samplers:
        if isinstance(s, Closeable):
            s.close()


Factory = Callable[[Config], "Sampler | None"]


def factories(nvml: Loader | None = None, pods: PodLabels | None = None,
              book: EnergyBook | None = None) -> list[Factory]:  # fmt: skip
    """Return the sampler factories in order (imported here to keep this module light)."""
    from agent.samplers import (
        disk,
        edac,
        gpu,
        host,
        infiniband,
        md,
        netprobe,
        network,
        nvme,
        sysctl,
        textfile,
    )

    return [host.build, disk.build, network.build, netprobe.build,
            functools.partial(gpu.build, nvml=nvml, pods=pods, book=book), textfile.build,
            edac.build, infiniband.build, md.build, nvme.build, sysctl.build]  # fmt: skip


def build_samplers(cfg: Config, nvml: Loader | None = None) -> list[Sampler]:
    """Build every sampler the configuration enables, one per worker for the workers.

    `nvml` is the NVML loader the daemon injects (the simulator's fake for gpu.simulate).
    """
    from agent.samplers import kubernetes
    from agent.samplers.gpu import GpuSampler
    from agent.samplers.gpu_pods import PodLabels
    from agent.workers.energy import EnergyBook
    from agent.workers.sampler import build_all

    k8s = kubernetes.build(cfg)
    pods = PodLabels(k8s.source) if k8s else None
    book = EnergyBook() if cfg.workers else None  # joules per token need workers
    made = [s for make in factories(nvml, pods, book) if (s := make(cfg)) is not None]
    made += [s.slow for s in made if isinstance(s, GpuSampler)]  # after it in every round
    return [*made, *([k8s] if k8s else []), *build_all(cfg, book)]
