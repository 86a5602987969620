"""A fake NVML with the pynvml call surface, driven by scenarios, for tests and demos."""

from __future__ import annotations

import math
import queue
import random
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml
from pynvml import NVMLError

from agent.nvml import (
    FUNCTION_NOT_FOUND,
    GPU_IS_LOST,
    NOT_SUPPORTED,
    TIMEOUT,
    UNINITIALIZED,
)
from agent.sim.fake_mig import FakeMig, MigCalls
from agent.sim.scenarios import GIB, gpu_uuid, scenario

# The stand-in scenario's refused calls, as the features this fake refuses
FEATURES = {"nvmlDeviceGetFanSpeed": "fan", "nvmlDeviceGetTotalEnergyConsumption": "energy",
            "nvmlDeviceGetTotalEccErrors": "ecc", "nvmlDeviceGetRemappedRows": "remap",
            "nvmlDeviceGetClockInfo": "clocks"}  # fmt: skip


@dataclass
class FakeGpu:
    """One simulated GPU's state; values move with time around these levels."""

    index: int
    model: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * GIB
    util: float = 0.75  # mean utilization
    temp: float = 62.0
    power_limit_mw: int = 700_000
    throttle: int = 0
    unsupported: set[str] = field(default_factory=lambda: {"fan"})
    nvlinks: int = 18
    nvlink_errors: int = 0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    ecc: dict[tuple[int, int], int] = field(default_factory=dict)
    lost_at: float | None = None  # monotonic time from which it is lost
    hang: float = 0.0  # seconds every call sleeps
    energy_mj: float = 0.0
    events: list[queue.Queue[Any]] = field(default_factory=list)
    mig: list[str] = field(default_factory=list)  # MIG profiles, one per device: MIG mode on

    @property
    def uuid(self) -> str:
        """A stable UUID per index."""
        return gpu_uuid(self.index)


class FakeNvml(MigCalls):
    """Stands in for the pynvml module; unknown attributes (constants) come from pynvml."""

    def __init__(self, gpus: list[FakeGpu], clock: Any = time.monotonic) -> None:
        self.gpus = gpus
        self.clock = clock
        self.initialized = 0
        self.driver_loaded = True
        self.old_driver = False  # before 535: no clock event reasons, only throttle reasons
        self._start = clock()
        self.spec: dict[str, Any] = {}  # the scenario it was built from, if any
        self._rng = random.Random(7)
        self.pending_xids: list[
            tuple[int, int]
        ] = []  # (gpu, xid) raised when events are registered

    def __getattr__(self, name: str) -> Any:
        return getattr(pynvml, name)

    @classmethod
    def scenario(cls, count: int, name: str = "normal") -> FakeNvml:
        """Build one of the named scenarios with `count` GPUs (defined in scenarios.py)."""
        return cls.from_spec(scenario(count, name))

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FakeNvml:
        """Take the GPUs of a stand-in scenario: their levels, refusals, processes and MIG."""
        fake = cls([])
        fake.spec = spec
        for i, g in enumerate(spec["gpus"]):
            refused = {FEATURES[c] for c in g.get("fail", {}) if c in FEATURES}
            fields = g.get("fields", {})
            fake.gpus.append(FakeGpu(
                i, model=g["name"], memory_total=g["memory_total"],
                util=g["utilization"]["base"] / 100, temp=g["temperature"]["base"],
                power_limit_mw=g["power_limit_mw"], throttle=g.get("throttle", 0),
                unsupported=refused | ({"memory_temp"} if "82" not in fields else set()),
                nvlinks=18 if "38" in fields else 0,
                processes=[(p["pid"], p["used"]) for p in g["processes"]],
                lost_at=fake._start + g["lost_after"] if "lost_after" in g else None,
                mig=[m["profile"] for m in g.get("mig", [])],
            ))  # fmt: skip
        fake.pending_xids = [(x["gpu"], x["xid"]) for x in spec.get("xid_events", [])]
        return fake

    # --- lifecycle -----------------------------------------------------------------
    def nvmlInit(self) -> None:
        """Initialise, or fail as a machine without a driver would."""
        if not self.driver_loaded:
            raise NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        """Release one initialisation."""
        self._live()
        self.initialized -= 1

    def _live(self) -> None:
        if not self.driver_loaded or self.initialized <= 0:
            raise NVMLError(UNINITIALIZED)

    def _dev(self, h: FakeGpu, feature: str | None = None) -> FakeGpu:
        self._live()
        if h.lost_at is not None and self.clock() >= h.lost_at:
            raise NVMLError(GPU_IS_LOST)
        if h.hang:
            time.sleep(h.hang)
        if feature in h.unsupported:
            raise NVMLError(NOT_SUPPORTED)
        return h

    def _wave(self, h: FakeGpu, period: float, amplitude: float) -> float:
        t = self.clock() - self._start
        return amplitude * math.sin(t / period + h.index) + self._rng.uniform(-0.01, 0.01)

    # --- identity ------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        """Return the number of GPUs."""
        self._live()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        """Return the GPU itself as its handle."""
        self._live()
        return self.gpus[index]

    def nvmlDeviceGetIndex(self, h: FakeGpu) -> int:
        """Index of a handle."""
        return self._dev(h).index

    def nvmlDeviceGetName(self, h: FakeGpu | FakeMig) -> str:
        """Model name; a MIG device's ends in its profile."""
        if isinstance(h, FakeMig):
            return f"{self.gpus[h.parent_index].model} MIG {h.profile}"
        return self._dev(h).model

    def nvmlDeviceGetArchitecture(self, h: FakeGpu) -> int:
        """Architecture by model name: A100 is Ampere, L40 Ada, anything else Hopper."""
        model = self._dev(h).model
        arch = "AMPERE" if "A100" in model else "ADA" if "L40" in model else "HOPPER"
        return int(getattr(pynvml, f"NVML_DEVICE_ARCH_{arch}"))

    def nvmlDeviceGetUUID(self, h: FakeGpu | FakeMig) -> str:
        """UUID of a GPU or of a MIG device."""
        return h.uuid if isinstance(h, FakeMig) else self._dev(h).uuid

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> SimpleNamespace:
        """PCI info with a bus id."""
        return SimpleNamespace(busId=f"00000000:{0x18 + 0x10 * self._dev(h).index:02X}:00.0")

    # --- load ----------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> SimpleNamespace:
        """GPU and memory-copy utilization, percent."""
        g = self._dev(h)
        util = min(1.0, max(0.0, g.util + self._wave(g, 30, 0.15)))
        return SimpleNamespace(gpu=round(100 * util), memory=round(60 * util))

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu | FakeMig, version: int = 0) -> SimpleNamespace:
        """Framebuffer memory, bytes, of a GPU or a MIG device (v2 if `version`)."""
        if isinstance(h, FakeMig):
            mig = self.spec["gpus"][h.parent_index]["mig"][h.slot] if self.spec else {}
            total, used = mig.get("memory_total", 10 * GIB), mig.get("memory_used", 0)
            return SimpleNamespace(total=total, used=used, free=total - used, reserved=0)
        g = self._dev(h)
        used = sum(b for _, b in g.processes) + GIB // 2
        return SimpleNamespace(total=g.memory_total, used=used, free=g.memory_total - used,
                               reserved=0)  # fmt: skip

    def nvmlGpmQueryDeviceSupport(self, h: FakeGpu) -> None:
        """No GPM here (the NVML stand-in, `make nvml-shim`, has it)."""
        raise NVMLError(FUNCTION_NOT_FOUND)

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        """Die temperature, Celsius."""
        g = self._dev(h)
        return round(g.temp + self._wave(g, 60, 3))

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[int]) -> list[SimpleNamespace]:
        """Field values: memory temperature (82) and NVLink error totals (38, 45, 52, 59)."""
        g = self._dev(h)
        out = []
        for fid in ids:
            missing = "memory_temp" if fid == 82 else "nvlink"
            ok = missing not in g.unsupported and (fid == 82 or g.nvlinks > 0)
            value = SimpleNamespace(uiVal=round(g.temp + 8) if fid == 82 else g.nvlink_errors)
            out.append(
                SimpleNamespace(nvmlReturn=0 if ok else NOT_SUPPORTED, valueType=1, value=value)
            )
        return out

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        """Power draw, milliwatts."""
        g = self._dev(h)
        return round(g.power_limit_mw * min(1.0, 0.3 + 0.7 * g.util + self._wave(g, 30, 0.05)))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        """Power limit, milliwatts."""
        return self._dev(h).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        """Energy since load, millijoules: integrated from the power draw."""
        g = self._dev(h, "energy")
        g.energy_mj = max(g.energy_mj, (self.clock() - self._start) * g.power_limit_mw * 0.8)
        return int(g.energy_mj)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, kind: int) -> int:
        """SM or memory clock, MHz; throttling lowers the SM clock."""
        g = self._dev(h, "clocks")
        if kind == pynvml.NVML_CLOCK_MEM:
            return 2619
        return 1410 if g.throttle else 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        """Active clock event (throttle) reasons as a bitmask; drivers from 535 on."""
        if self.old_driver:
            raise NVMLError(FUNCTION_NOT_FOUND)
        return self._dev(h).throttle

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: FakeGpu) -> int:
        """Return the same bitmask, under its name before 535."""
        return self._dev(h).throttle

    def nvmlDeviceGetPcieReplayCounter(self, h: FakeGpu) -> int:
        """PCIe replays."""
        return self._dev(h).index  # a different small count per GPU

    def nvmlDeviceGetFanSpeed(self, h: FakeGpu) -> int:
        """Fan speed, percent (datacenter boards have none)."""
        self._dev(h, "fan")
        return 40

    # --- memory errors -----------------------------------------------------------------
    def nvmlDeviceGetTotalEccErrors(self, h: FakeGpu, etype: int, scope: int) -> int:
        """ECC errors of a type and scope."""
        return self._dev(h, "ecc").ecc.get((etype, scope), 0)

    def nvmlDeviceGetRetiredPages(self, h: FakeGpu, cause: int) -> list[int]:
        """Retired pages (none; H100 remaps rows instead)."""
        self._dev(h, "retired")
        raise NVMLError(NOT_SUPPORTED)

    def nvmlDeviceGetRemappedRows(self, h: FakeGpu) -> tuple[int, int, int, int]:
        """Rows remapped: correctable, uncorrectable, pending, failure."""
        self._dev(h, "remap")
        return (0, 0, 0, 0)

    # --- processes and events -----------------------------------------------------------
    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[SimpleNamespace]:
        """Compute processes and their memory."""
        g = self._dev(h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    def nvmlEventSetCreate(self) -> queue.Queue[Any]:
        """Create an event set (a queue here)."""
        self._live()
        return queue.Queue()

    def nvmlDeviceRegisterEvents(self, h: FakeGpu, types: int, event_set: queue.Queue[Any]) -> None:
        """Deliver this GPU's future XIDs, and any scenario XIDs, to the set."""
        g = self._dev(h)
        g.events.append(event_set)
        for index, xid in self.pending_xids:
            if index == g.index:
                self.inject_xid(index, xid)

    def nvmlEventSetWait_v2(self, event_set: queue.Queue[Any], timeout_ms: int) -> Any:
        """Wait for the next event, or raise NVML_ERROR_TIMEOUT."""
        self._live()
        try:
            return event_set.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise NVMLError(TIMEOUT) from None

    def nvmlEventSetFree(self, event_set: queue.Queue[Any]) -> None:
        """Forget an event set."""
        for g in self.gpus:
            if event_set in g.events:
                g.events.remove(event_set)

    # --- test controls ---------------------------------------------------------------------
    def inject_xid(self, index: int, xid: int) -> None:
        """Raise an XID event on a GPU."""
        g = self.gpus[index]
        data = SimpleNamespace(device=g, eventType=0x8, eventData=xid)
        for event_set in g.events:
            event_set.put(data)
