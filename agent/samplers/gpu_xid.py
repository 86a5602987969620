"""XID errors as events: an NVML event set, drained once a round, counts each one."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from pynvml import NVMLError

from agent.nvml import NOT_SUPPORTED, TIMEOUT, Device

log = logging.getLogger(__name__)

XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError
POLL_MS = 0  # the driver queues events between rounds: NVML answers at once, without a sleep
MOST_PER_ROUND = 1000  # an event storm cannot hold the reading thread


class XidWatcher:
    """Counts critical XID events per (gpu index, xid), so the same XID twice counts twice.

    The set is drained by the thread that reads the GPUs, at the end of each round, rather than
    by a thread of its own that would wake up all the time to find nothing.
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, int]] = Counter()
        self._busy = threading.Lock()  # one drain at a time; a stuck one blocks the rest
        self._counting = threading.Lock()  # never held across an NVML call
        self._nvml: Any = None
        self._set: Any = None

    def start(self, nvml: Any, devices: list[Device]) -> None:
        """Register every GPU that supports XID events."""
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

    def drain(self) -> None:
        """Count the events waiting in the set; skip the round if another drain is stuck."""
        if self._set is None or not self._busy.acquire(blocking=False):
            return
        try:
            for _ in range(MOST_PER_ROUND):
                try:
                    data = self._nvml.nvmlEventSetWait_v2(self._set, POLL_MS)
                except NVMLError as exc:
                    if exc.value != TIMEOUT:
                        log.debug("XID poll: %s", exc)
                    return
                self._record(data)
        finally:
            self._busy.release()

    def _record(self, data: Any) -> None:
        try:
            index = int(self._nvml.nvmlDeviceGetIndex(data.device))
        except NVMLError:
            return
        xid = int(data.eventData)
        with self._counting:
            self.counts[(index, xid)] += 1
        log.warning("GPU %d: XID %d", index, xid)

    def snapshot(self) -> dict[tuple[int, int], int]:
        """Return the counts so far."""
        with self._counting:
            return dict(self.counts)

    def stop(self) -> None:
        """Free the event set, unless a drain stuck in NVML still holds it."""
        if self._set is None:
            return
        if not self._busy.acquire(timeout=1.0):
            log.warning("XID poll still stuck in NVML; leaving its event set allocated")
            self._set = None
            return
        try:
            self._nvml.nvmlEventSetFree(self._set)
        except NVMLError as exc:
            log.debug("nvmlEventSetFree: %s", exc)
        finally:
            self._set = None
            self._busy.release()
