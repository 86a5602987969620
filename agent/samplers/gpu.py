"""GPU sampler: every GPU through NVML, each read bounded by a deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from agent.config import Config
from agent.nvml import Device, GpuLost, Loader, NvmlDown, NvmlSession, ask, load_pynvml
from agent.samplers.gpu_fields import METRICS, read_gpu
from agent.samplers.gpu_xid import XidWatcher
from agent.store import Sample
from agent.workers.pids import WorkerMap

log = logging.getLogger(__name__)

GpuRead = tuple[list[Sample], list[tuple[int, float]]]  # fields, (pid, bytes)
PASSES = 2  # reads of the GPUs behind a hung one, within a round


def _read(nvml: Any, dev: Device) -> GpuRead:
    """Everything read from one GPU."""
    readings = read_gpu(nvml, dev)
    procs = ask(dev, "processes", nvml.nvmlDeviceGetComputeRunningProcesses, dev.handle)
    usage = [
        (int(p.pid), float(p.usedGpuMemory)) for p in procs or () if p.usedGpuMemory is not None
    ]
    return readings, usage


class Batch:
    """Reads GPUs one after another on one thread; the caller can tell which one it is stuck on."""

    def __init__(self, devices: list[Device], then: Callable[[], None]) -> None:
        self.devices, self.then = devices, then
        self.results: dict[int, GpuRead | GpuLost] = {}
        self.current = -1  # the GPU being read; -1 before, between and after
        self.cancelled = False

    def run(self, nvml: Any) -> None:
        """Read each GPU until done or cancelled, then drain XIDs; NvmlDown reaches the caller."""
        for dev in self.devices:
            if self.cancelled:
                return
            self.current = dev.index
            try:
                self.results[dev.index] = _read(nvml, dev)
            except GpuLost as exc:
                self.results[dev.index] = exc
        self.current = -1
        self.then()


class GpuSampler:
    """Owns the NVML session, the XID event set and the thread that reads the GPUs.

    One thread reads every GPU in turn: eight hand-offs a round to eight threads cost more CPU
    than the reads. A read that outruns the timeout leaves its thread stuck on that GPU; the
    GPUs behind it are read by a fresh batch, and the stuck one is skipped until it answers.
    """

    name = "gpu"
    metrics = METRICS

    def __init__(self, session: NvmlSession, timeout: float, workers: WorkerMap) -> None:
        self.session, self.timeout, self.workers = session, timeout, workers
        self.xid = XidWatcher()
        self.timeouts = 0
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nvml")
        self._stuck: dict[int, Future[None]] = {}  # GPU index -> the batch still stuck on it
        self._watching: Any = None

    def sample(self, now: float) -> list[Sample]:
        """Read every GPU within the deadline; a lost or hung GPU reports gpu_up 0."""
        if not self.session.open():
            return [Sample("dsagent_nvml_up", 0.0)]
        if self._watching is not self.session.nvml:  # a new (or re-initialised) session
            self._watching = self.session.nvml
            self._stuck.clear()
            self.xid.start(self.session.nvml, self.session.devices)
        try:
            out = self._samples(self._collect())
        except NvmlDown as exc:
            self.xid.stop()
            self._watching = None
            self.session.lost_driver(exc)
            return [Sample("dsagent_nvml_up", 0.0)]
        out.append(Sample("dsagent_nvml_up", 1.0))
        out.append(Sample("dsagent_nvml_timeouts_total", float(self.timeouts)))
        out.extend(self._xid_samples())
        return out

    def _collect(self) -> dict[int, GpuRead | GpuLost]:
        """Read the GPUs not stuck from an earlier round; raises NvmlDown."""
        for index in [i for i, fut in self._stuck.items() if fut.done()]:
            del self._stuck[index]
            log.info("GPU %d: NVML answers again", index)
        todo = [d for d in self.session.devices if d.index not in self._stuck]
        results: dict[int, GpuRead | GpuLost] = {}
        for _ in range(PASSES):
            if not todo:
                break
            batch = Batch(todo, self.xid.drain)
            fut = self._pool.submit(batch.run, self.session.nvml)
            try:
                fut.result(timeout=self.timeout)  # re-raises NvmlDown
                finished = True
            except TimeoutError:
                finished = False
            batch.cancelled = True
            results.update(batch.results)
            if finished:
                break
            if batch.current < 0:  # every GPU answered; the XID poll is what hangs
                log.error("NVML XID poll did not answer within %gs", self.timeout)
                break
            self._note_hung(batch.current, fut)
            todo = [d for d in todo if d.index not in results and d.index not in self._stuck]
        return results

    def _note_hung(self, index: int, fut: Future[None]) -> None:
        self.timeouts += 1
        self._stuck[index] = fut
        log.error("GPU %d: NVML did not answer within %gs; gpu_up 0", index, self.timeout)

    def _samples(self, results: dict[int, GpuRead | GpuLost]) -> list[Sample]:
        """Turn the reads into samples; a GPU without a good read is gpu_up 0."""
        out: list[Sample] = []
        seen: set[int] = set()
        for dev in self.session.devices:
            got = results.get(dev.index)
            if got is None or isinstance(got, GpuLost):
                out.append(Sample("gpu_up", 0.0, dev.labels))
                continue
            readings, usage = got
            out.append(Sample("gpu_up", 1.0, dev.labels))
            out.extend(readings)
            out.extend(self._process_samples(dev, usage, seen))
        self.workers.forget_except(seen)
        return out

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


def build(cfg: Config, nvml: Loader | None = None) -> GpuSampler | None:
    """Build the GPU sampler; off when disabled, or on 'auto' without NVML or GPUs.

    `nvml` loads the NVML module: pynvml unless the daemon injects the simulator's fake.
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
    return GpuSampler(session, gpu.timeout, WorkerMap(cfg.workers, cfg.host.proc_root))
