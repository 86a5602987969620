"""GPU sampler: every GPU through NVML, each read bounded by a deadline."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from agent.config import Config
from agent.nvml import Device, GpuLost, NvmlDown, NvmlSession, field, load_pynvml
from agent.samplers.gpu_fields import METRICS, Reading, read_gpu
from agent.samplers.gpu_xid import XidWatcher
from agent.store import Labels, Sample
from agent.workers import WorkerMap

log = logging.getLogger(__name__)

GpuRead = tuple[list[Reading], list[tuple[int, float]]]  # fields, (pid, bytes)


def _read(nvml: Any, dev: Device) -> GpuRead:
    """Everything read from one GPU in one worker thread."""
    readings = read_gpu(nvml, dev.handle)
    procs = field(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(dev.handle)) or []
    usage = [(int(p.pid), float(p.usedGpuMemory)) for p in procs if p.usedGpuMemory is not None]
    return readings, usage


class GpuSampler:
    """Owns the NVML session, the XID watcher and the threads that read each GPU."""

    name = "gpu"
    metrics = METRICS

    def __init__(self, session: NvmlSession, timeout: float, workers: WorkerMap) -> None:
        self.session, self.timeout, self.workers = session, timeout, workers
        self.xid = XidWatcher()
        self.timeouts = 0
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nvml")
        self._inflight: dict[int, Future[GpuRead]] = {}
        self._hung: set[int] = set()
        self._watching: Any = None
        self._label_cache: dict[tuple[int, Labels], Labels] = {}

    def sample(self, now: float) -> Iterator[Sample]:
        """Read every GPU within the deadline; a lost or hung GPU reports gpu_up 0."""
        if not self.session.open():
            yield Sample("dsagent_nvml_up", 0.0)
            return
        if self._watching is not self.session.nvml:  # a new (or re-initialised) session
            self._watching = self.session.nvml
            self._inflight.clear()
            self._label_cache.clear()
            self.xid.start(self.session.nvml, self.session.devices)
        try:
            yield from self._read_all()
        except NvmlDown as exc:
            self.xid.stop()
            self._watching = None
            self.session.lost_driver(exc)
            yield Sample("dsagent_nvml_up", 0.0)
            return
        yield Sample("dsagent_nvml_up", 1.0)
        yield Sample("dsagent_nvml_timeouts_total", float(self.timeouts))
        yield from self._xid_samples()

    def _read_all(self) -> Iterator[Sample]:
        nvml, devices = self.session.nvml, self.session.devices
        futures = {d.index: self._submit(nvml, d) for d in devices}
        wait([f for f in futures.values() if f], timeout=self.timeout)
        seen: set[int] = set()
        for dev in devices:
            fut = futures[dev.index]
            if fut is None or not fut.done():
                self._note_hung(dev, fut is not None)
                yield Sample("gpu_up", 0.0, dev.labels)
                continue
            self._hung.discard(dev.index)
            try:
                readings, usage = fut.result()
            except GpuLost:
                yield Sample("gpu_up", 0.0, dev.labels)
                continue
            yield Sample("gpu_up", 1.0, dev.labels)
            yield from (Sample(n, v, self._labels(dev, extra)) for n, v, extra in readings)
            yield from self._process_samples(dev, usage, seen)
        self.workers.forget_except(seen)

    def _labels(self, dev: Device, extra: Labels) -> Labels:
        """Return a GPU's labels plus extra ones, sorted once and cached."""
        key = (dev.index, extra)
        labels = self._label_cache.get(key)
        if labels is None:
            labels = self._label_cache[key] = tuple(sorted(dev.labels + extra))
        return labels

    def _submit(self, nvml: Any, dev: Device) -> Future[GpuRead] | None:
        """Start reading a GPU, unless the previous read of it is still stuck."""
        previous = self._inflight.get(dev.index)
        if previous is not None and not previous.done():
            return None
        fut = self._pool.submit(_read, nvml, dev)
        self._inflight[dev.index] = fut
        return fut

    def _note_hung(self, dev: Device, new: bool) -> None:
        if new:
            self.timeouts += 1
        if dev.index not in self._hung:
            self._hung.add(dev.index)
            log.error("GPU %d: NVML did not answer within %gs; gpu_up 0", dev.index, self.timeout)

    def _process_samples(self, dev: Device, usage: list[tuple[int, float]],
                         seen: set[int]) -> Iterator[Sample]:  # fmt: skip
        for pid, used in usage:
            seen.add(pid)
            name, worker = self.workers.describe(pid)
            labels = {"gpu": str(dev.index), "pid": str(pid), "process": name}
            if worker:
                labels["worker"] = worker
            yield Sample("gpu_process_memory_bytes", used, tuple(sorted(labels.items())))

    def _xid_samples(self) -> Iterator[Sample]:
        by_index = {d.index: d.labels for d in self.session.devices}
        counts = self.xid.snapshot()
        for dev in self.session.devices:  # starts at 0, so increase() sees the first XID
            total = sum(n for (index, _), n in counts.items() if index == dev.index)
            yield Sample("gpu_xid_events_total", float(total), dev.labels)
        for (index, xid), count in sorted(counts.items()):
            labels = by_index.get(index, (("gpu", str(index)),))
            yield Sample(
                "gpu_xid_errors_total", float(count), tuple(sorted((*labels, ("xid", str(xid)))))
            )

    def close(self) -> None:
        """Stop the XID thread, the read threads and NVML."""
        self.xid.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()


def build(cfg: Config) -> GpuSampler | None:
    """Build the GPU sampler; off when disabled, or on 'auto' without NVML or GPUs."""
    gpu = cfg.gpu
    if gpu.enabled is False:
        return None
    loader: Any = load_pynvml
    if gpu.simulate:
        from agent.sim.fake_nvml import FakeNvml

        loader = lambda: FakeNvml.scenario(gpu.simulate, gpu.scenario)  # noqa: E731
    session = NvmlSession(loader)
    opened = session.open()
    if gpu.enabled == "auto" and not gpu.simulate and not (opened and session.devices):
        log.info("GPU sampler off: %s", session.error or "NVML found no GPUs")
        session.close()
        return None
    if not opened:
        log.error("GPU sampler: %s; retrying every %gs", session.error, session.retry_after)
    return GpuSampler(session, gpu.timeout, WorkerMap(cfg.workers, cfg.host.proc_root))
