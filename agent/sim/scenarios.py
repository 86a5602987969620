"""Simulated GPUs, defined once: the NVML stand-in's JSON scenario (agent/sim/nvml_shim).

`gpu.simulate = N` and `gpu.scenario` build one of these. Where the stand-in is built
(`make nvml-shim`), the agent reads it through the real nvidia-ml-py; elsewhere the Python fake
(fake_nvml.py) takes its GPUs from the same scenario.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

GIB = 1 << 30
H100 = "NVIDIA H100 80GB HBM3"
POWER_LIMIT_MW = 700_000

# Fields the NVML field-values call answers: HBM temperature (82), NVLink error totals
FIELDS = {"82": 70, "38": 0, "45": 0, "52": 0, "59": 0}
# What each scenario's "unsupported" GPU refuses: field families by their NVML calls
UNSUPPORTED = ["nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTotalEccErrors",
               "nvmlDeviceGetRemappedRows", "nvmlDeviceGetClockInfo"]  # fmt: skip


def wave(base: float, amp: float, period: float) -> dict[str, float]:
    """Return a value moving as base + amp * sin(t / period + gpu index)."""
    return {"base": base, "amp": amp, "period": period}


def gpu_uuid(index: int) -> str:
    """Return a stable UUID per index."""
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"dsagent-fake-{index}"))


def mig_uuid(index: int, slot: int) -> str:
    """Return a stable MIG UUID per GPU and slot."""
    return "MIG-" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"dsagent-fake-{index}-mig-{slot}"))


def busy_gpu(index: int, pid: int, util: float = 75, temp: float = 62) -> dict[str, Any]:
    """Return an H100 serving a model: 60 GiB held by one process, GPM on, no fan (datacenter)."""
    return {
        "name": H100, "uuid": gpu_uuid(index), "architecture": 9,
        "pci_bus_id": f"00000000:{0x18 + 0x10 * index:02X}:00.0",
        "utilization": wave(util, 15, 30), "memory_utilization": round(0.6 * util),
        "temperature": wave(temp, 3, 60),
        "power_mw": wave(POWER_LIMIT_MW * (0.3 + 0.007 * util), 35_000, 30),
        "power_limit_mw": POWER_LIMIT_MW, "memory_total": 80 * GIB,
        "memory_used": 60 * GIB + GIB // 2, "memory_reserved": GIB // 2,
        "fields": dict(FIELDS), "fail": {"nvmlDeviceGetFanSpeed": 3},
        "processes": [{"pid": pid, "used": 60 * GIB}],
        "gpm_supported": True,
        "gpm": {"1": wave(util, 15, 30), "2": wave(0.85 * util, 13, 30), "3": wave(35, 5, 30),
                "5": wave(40, 10, 30), "10": wave(55, 10, 30), "13": wave(20, 5, 30),
                "20": wave(2000, 500, 30), "21": wave(1500, 500, 30),
                "60": wave(40_000, 5000, 30), "61": wave(40_000, 5000, 30)},
    }  # fmt: skip


def _split(gpu: dict[str, Any], index: int, parts: int) -> None:
    """Split a GPU in MIG instances (two 3g.40gb, or seven 1g.10gb), its process in the first."""
    profile, size = ("3g.40gb", 40 * GIB) if parts == 2 else ("1g.10gb", 10 * GIB)
    gpu["mig"] = [{"profile": profile, "gi": gi, "ci": 0, "uuid": mig_uuid(index, gi - 1),
                   "memory_total": size, "memory_used": size * 3 // 4 if gi == 1 else 0,
                   "gpm": {"2": wave(50, 10, 30), "3": wave(30, 5, 30), "5": wave(25, 5, 30),
                           "10": wave(40, 10, 30)}}
                  for gi in range(1, parts + 1)]  # fmt: skip
    for proc in gpu["processes"]:
        proc.update(gi=1, ci=0, used=size * 3 // 4)


def scenario(count: int, name: str = "normal", pid: int | None = None) -> dict[str, Any]:
    """Return the named scenario with `count` GPUs, their memory held by `pid` (default: us)."""
    pid = os.getpid() if pid is None else pid
    gpus = [busy_gpu(i, pid) for i in range(count)]
    spec: dict[str, Any] = {"driver_version": "580.95.05", "gpus": gpus, "xid_events": []}
    for i, g in enumerate(gpus):
        if name == "throttle":
            g.update(utilization=wave(97, 2, 30), temperature=wave(88, 1, 60), throttle=0x4 | 0x20,
                     sm_clock_mhz=1410)  # fmt: skip
        elif name == "unsupported":
            g["fail"].update({call: 3 for call in UNSUPPORTED})
            g["fields"], g["gpm_supported"] = {}, False
        elif name in ("mig", "mig7"):
            _split(g, i, 2 if name == "mig" else 7)
        elif name == "lost" and i == 1:
            g["lost_after"] = 10.0  # seconds after the driver loads
    if name == "xid_burst" and gpus:
        spec["xid_events"] = [{"gpu": 0, "xid": 79}, {"gpu": 0, "xid": 79}, {"gpu": 0, "xid": 48}]
    return spec
