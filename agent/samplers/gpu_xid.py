"""XID errors as events: a thread waits on an NVML event set and counts each one."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

from pynvml import NVMLError

from agent.nvml import GPU_IS_LOST, NOT_SUPPORTED, TIMEOUT, Device

log = logging.getLogger(__name__)

XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError


class XidWatcher:
    """Counts critical XID events per (gpu index, xid), so the same XID twice counts twice."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        self._set: Any = None

    def start(self, nvml: Any, devices: list[Device]) -> None:
        """Register every GPU that supports XID events and start waiting on them."""
        self.stop()
        try:
            event_set = nvml.nvmlEventSetCreate()
        except NVMLError as exc:
            log.warning("XID events unavailable: %s", exc)
            return
        for dev in devices:
            try:
                nvml.nvmlDeviceRegisterEvents(dev.handle, XID_CRITICAL, event_set)
            except NVMLError as exc:
                if exc.value != NOT_SUPPORTED:
                    log.warning("GPU %d: cannot watch XID events: %s", dev.index, exc)
        self._nvml, self._set = nvml, event_set
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nvml-xid", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        nvml, event_set = self._nvml, self._set
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(event_set, 500)
            except NVMLError as exc:
                if exc.value not in (TIMEOUT, GPU_IS_LOST):
                    log.debug("XID wait: %s", exc)
                if exc.value != TIMEOUT:
                    self._stop.wait(0.5)  # a lost GPU answers at once: do not spin
                continue
            self._record(nvml, data)

    def _record(self, nvml: Any, data: Any) -> None:
        try:
            index = int(nvml.nvmlDeviceGetIndex(data.device))
        except NVMLError:
            return
        xid = int(data.eventData)
        with self._lock:
            self.counts[(index, xid)] += 1
        log.warning("GPU %d: XID %d at %s", index, xid, time.strftime("%H:%M:%S"))

    def snapshot(self) -> dict[tuple[int, int], int]:
        """Return the counts so far."""
        with self._lock:
            return dict(self.counts)

    def stop(self) -> None:
        """Stop waiting and free the event set."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except NVMLError as exc:
                log.debug("nvmlEventSetFree: %s", exc)
            self._set = None
