"""GPU sampler: every GPU through NVML, each read bounded by a deadline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from agent.config import Config
from agent.nvml import Device, GpuLost, Loader, NvmlDown, NvmlSession, load_pynvml
from agent.samplers.gpu_fields import METRICS
from agent.samplers.gpu_gpm import METRICS as GPM_METRICS
from agent.samplers.gpu_mig import METRICS as MIG_METRICS
from agent.samplers.gpu_pods import METRICS as POD_METRICS
from agent.samplers.gpu_pods import PodLabels
from agent.samplers.gpu_read import GpuRead, GpuReader, SlowFields, Usage
from agent.samplers.gpu_xid import XidWatcher
from agent.store import Sample, sample
from agent.tether import Tether
from agent.workers.energy import EnergyBook
from agent.workers.pids import WorkerMap

log = logging.getLogger(__name__)


def energy_by_holder(samples: list[Sample]) -> dict[str, tuple[float, int]]:
    """Sum the GPU energy counters of each worker, and of each pod, over the GPUs they use.

    A worker's GPUs are those its processes use (each counted once); a pod's, those the kubelet
    allocated to it alone (its labels are on their series), keyed "pod:NAMESPACE/POD".
    """
    energy: dict[str, float] = {}
    gpus: dict[str, set[str]] = {}
    for s in samples:
        if s.name == "gpu_energy_joules_total":
            labels = dict(s.labels)
            energy[labels["gpu"]] = s.value
            if "pod" in labels:
                gpus.setdefault(f"pod:{labels['namespace']}/{labels['pod']}", set()).add(
                    labels["gpu"])  # fmt: skip
    for s in samples:
        if s.name == "gpu_process_memory_bytes":
            labels = dict(s.labels)
            if "worker" in labels and labels["gpu"] in energy:
                gpus.setdefault(labels["worker"], set()).add(labels["gpu"])
    return {w: (sum(energy[g] for g in held), len(held)) for w, held in gpus.items()}


class Batch:
    """Reads GPUs one after another; another thread can tell which one it is stuck on."""

    def __init__(self, devices: list[Device], then: Callable[[], None]) -> None:
        self.devices, self.then = devices, then
        self.results: dict[int, GpuRead | GpuLost] = {}
        self.current = -1  # the GPU being read; -1 before, between and after
        self.began = time.monotonic()
        self.cancelled = False  # a later round read around it: stop at the next GPU
        self.down: NvmlDown | None = None  # the driver went away while it read
        self.done = threading.Event()

    def run(self, reader: GpuReader) -> None:
        """Read each GPU until done or cancelled, then drain XIDs; keep NvmlDown in `down`."""
        try:
            for dev in self.devices:
                if self.cancelled:
                    return
                self.current = dev.index
                try:
                    self.results[dev.index] = reader.read(dev)
                except GpuLost as exc:
                    self.results[dev.index] = exc
            self.current = -1
            self.then()
        except NvmlDown as exc:
            self.down = exc
        finally:
            self.done.set()


def mix_samples(devices: list[Device]) -> list[Sample]:
    """Return each GPU's identity with its architecture, and how many kinds the node mixes."""
    out = [sample("gpu_info", 1, **dict(d.labels), architecture=d.architecture) for d in devices]
    if devices:
        known = {d.architecture for d in devices} - {"unknown"}  # a refused call is no new kind
        out.append(sample("node_gpu_architectures", len(known)))
        out.append(sample("node_gpu_models", len({dict(d.labels)["model"] for d in devices})))
    return out


class GpuSampler:
    """Owns the NVML session and the XID event set; reads the GPUs on a thread of its own.

    Each run hands the read to its thread and waits up to the timeout. A GPU whose call hangs
    keeps that thread: the run reports that GPU down (and what it read before it), and later
    runs read the others on another thread, skipping the stuck GPU until its call returns.
    """

    name = "gpu"
    metrics: ClassVar = {**METRICS, **GPM_METRICS, **MIG_METRICS, **POD_METRICS}

    def __init__(self, session: NvmlSession, timeout: float, workers: WorkerMap,
                 pods: PodLabels | None = None,
                 book: EnergyBook | None = None) -> None:  # fmt: skip
        self.session, self.timeout, self.workers, self.pods = session, timeout, workers, pods
        self.book = book  # each worker's GPU energy, for its joules per token
        self.xid = XidWatcher()
        self.timeouts = 0
        self._lock = threading.Lock()
        self._reading: list[Batch] = []  # runs in progress, the hung ones among them
        self._stuck: dict[int, Batch] = {}  # GPU index -> the run still stuck on it
        self._watching: Any = None
        self._reader: GpuReader | None = None  # of the session being watched
        self._mix: list[Sample] = []
        self._tether = Tether("nvml")
        self.slow = SlowFields(self.slow_samples)  # the round loop runs it after this one

    def sample(self, now: float) -> list[Sample]:
        """Read every GPU not stuck; a lost or hung GPU reports gpu_up 0."""
        if not self.session.open():
            return [Sample("dsagent_nvml_up", 0.0)]
        with self._lock:
            if self._watching is not self.session.nvml:  # a new (or re-initialised) session
                self._watching = self.session.nvml
                if self._reader is not None:
                    self._reader.close()
                self._reader = GpuReader(self.session.nvml)
                self._stuck.clear()
                self._mix = mix_samples(self.session.devices)  # fixed for the session
                self.xid.start(self.session.nvml, self.session.devices)
        results = self._collect()
        if isinstance(results, NvmlDown):
            self.xid.stop()
            self._watching = None
            self.session.lost_driver(results)
            return [Sample("dsagent_nvml_up", 0.0)]
        if self.pods is not None:
            self.pods.refresh(self.session.nvml, self.session.devices)
        out = self._samples(results)
        if self.book is not None:
            self.book.record(now, energy_by_holder(out))
        out.extend(self._mix)
        if self.pods is not None:
            out.extend(self.pods.samples())
        out.append(Sample("dsagent_nvml_up", 1.0))
        out.append(Sample("dsagent_nvml_timeouts_total", float(self.timeouts)))
        out.extend(self._xid_samples())
        return out

    def slow_samples(self) -> list[Sample]:
        """Return the seldom-changing fields of each GPU, as last read (a lost GPU has none)."""
        reader = self._reader
        if reader is None or self._watching is None:
            return []
        out: list[Sample] = []
        for dev in self.session.devices:
            read = reader.slow.get(dev.index)
            if read is not None:
                out.extend(self._with_pod(dev.index, read[1]))
        return out

    def _collect(self) -> dict[int, GpuRead | GpuLost] | NvmlDown:
        """Read the GPUs no earlier run is stuck on; past the timeout, read the rest again.

        A GPU that hangs this run holds up the GPUs after it: a second pass reads those on
        another thread, waiting a quarter of the timeout, so only the hung GPU misses the round.
        """
        todo = self._todo()
        batch = self._start(todo)
        if batch.done.wait(self.timeout) or batch.current < 0:
            return batch.down if batch.down is not None else dict(batch.results)
        self._todo(time.monotonic())  # still going now: hung, noted this round
        results = dict(batch.results)
        rest = [d for d in todo if d.index not in results and d.index not in self._stuck]
        if rest:
            again = self._start(rest)
            again.done.wait(self.timeout / 4)  # a slow pass is judged by the next round
            results.update(again.results)
        return results

    def _start(self, devices: list[Device]) -> Batch:
        """Hand a batch of reads to a thread of this sampler's tether."""
        batch, reader = Batch(devices, self.xid.drain), self._reader
        assert reader is not None  # set with the session, before the first batch
        with self._lock:
            self._reading.append(batch)
        self._tether.submit(lambda: self._read(batch, reader))
        return batch

    def _read(self, batch: Batch, reader: GpuReader) -> None:
        try:
            batch.run(reader)
        finally:
            with self._lock:
                self._reading.remove(batch)

    def _todo(self, hung_since: float | None = None) -> list[Device]:
        """Note the runs begun before `hung_since` (a timeout ago); return the GPUs not stuck."""
        hung_since = time.monotonic() - self.timeout if hung_since is None else hung_since
        with self._lock:
            for index in [i for i, b in self._stuck.items() if b not in self._reading]:
                del self._stuck[index]
                log.info("GPU %d: NVML answers again", index)
            for batch in self._reading:
                if batch.cancelled or batch.began > hung_since:
                    continue
                batch.cancelled = True
                if batch.current < 0:  # every GPU answered; the XID poll is what hangs
                    log.error("NVML XID poll did not answer within %gs", self.timeout)
                    continue
                self.timeouts += 1
                self._stuck[batch.current] = batch
                log.error("GPU %d: NVML did not answer within %gs; gpu_up 0", batch.current,
                          self.timeout)  # fmt: skip
            return [d for d in self.session.devices if d.index not in self._stuck]

    def _samples(self, results: dict[int, GpuRead | GpuLost]) -> list[Sample]:
        """Turn the reads into samples; a GPU without a good read is gpu_up 0."""
        out: list[Sample] = []
        seen: set[int] = set()
        for dev in self.session.devices:
            got = results.get(dev.index)
            if got is None and dev.index not in self._stuck:
                continue  # not read yet when the run stopped waiting: no news, not down
            up = Sample("gpu_up", float(got is not None and not isinstance(got, GpuLost)),
                        dev.labels)  # fmt: skip
            mine = [up]
            if got is not None and not isinstance(got, GpuLost):
                mine.extend(got[0])
                mine.extend(self._process_samples(dev, got[1], seen))
            elif self._reader is not None:
                self._reader.slow.pop(dev.index, None)  # lost: its fields go at the next report
            out.extend(self._with_pod(dev.index, mine))
        self.workers.forget_except(seen)
        return out

    def _process_samples(self, dev: Device, usage: list[Usage],
                         seen: set[int]) -> Iterator[Sample]:  # fmt: skip
        for use in usage:
            seen.add(use.pid)
            name, worker = self.workers.describe(use.pid)
            labels = {"gpu": str(dev.index), "pid": str(use.pid), "process": name, **dict(use.mig)}
            if worker:
                labels["worker"] = worker
            yield Sample("gpu_process_memory_bytes", use.used, tuple(sorted(labels.items())))

    def _xid_samples(self) -> Iterator[Sample]:
        by_index = {d.index: d.labels for d in self.session.devices}
        counts = self.xid.snapshot()
        for dev in self.session.devices:  # starts at 0, so increase() sees the first XID
            total = sum(n for (index, _), n in counts.items() if index == dev.index)
            events = [Sample("gpu_xid_events_total", float(total), dev.labels)]
            yield from self._with_pod(dev.index, events)
        for (index, xid), count in sorted(counts.items()):
            labels = by_index.get(index, (("gpu", str(index)),))
            errors = [Sample("gpu_xid_errors_total", float(count),
                             tuple(sorted((*labels, ("xid", str(xid))))))]  # fmt: skip
            yield from self._with_pod(index, errors)

    def _with_pod(self, index: int, samples: list[Sample]) -> Iterable[Sample]:
        """Return a GPU's samples with the labels of the pod holding it (on Kubernetes)."""
        return self.pods.relabel(index, samples) if self.pods else samples

    def close(self) -> None:
        """Stop the XID watch and NVML."""
        self.xid.stop()
        if self._reader is not None:
            self._reader.close()
        self.session.close()
        self._tether.close()


def build(cfg: Config, nvml: Loader | None = None, pods: PodLabels | None = None,
          book: EnergyBook | None = None) -> GpuSampler | None:  # fmt: skip
    """Build the GPU sampler; off when disabled, or on 'auto' without NVML or GPUs.

    `nvml` loads the NVML module: pynvml unless the daemon injects the simulator's fake;
    `pods` puts the holding pod on each GPU's series (Kubernetes).
    """
    gpu = cfg.gpu
    if gpu.enabled is False:
        return None
    session = NvmlSession(nvml or load_pynvml)
    opened = session.open()
    if gpu.enabled == "auto" and not gpu.simulate and not (opened and session.devices):
        log.info("GPU sampler off: %s", session.error or "NVML found no GPUs")
        session.close()
        return None
    if not opened:
        log.error("GPU sampler: %s; retrying every %gs", session.error, session.retry_after)
    workers = WorkerMap(cfg.workers, cfg.host.proc_root)
    return GpuSampler(session, gpu.timeout, workers, pods, book)
