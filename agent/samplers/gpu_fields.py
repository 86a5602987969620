"""What is read from each GPU: one small reader per NVML call; unsupported fields stay absent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from agent.nvml import field
from agent.store import MetricInfo

Reading = tuple[str, float, tuple[tuple[str, str], ...]]  # name, value, extra labels
Reader = Callable[[Any, Any], Iterator[Reading]]

METRICS = {
    "gpu_up": MetricInfo("gauge", "1 if the GPU answers NVML, 0 if lost or hung."),
    "gpu_utilization_ratio": MetricInfo("gauge", "Share of time a kernel ran on the GPU."),
    "gpu_memory_copy_utilization_ratio": MetricInfo("gauge", "Share of time memory was copied."),
    "gpu_memory_used_bytes": MetricInfo("gauge", "Framebuffer memory in use."),
    "gpu_memory_total_bytes": MetricInfo("gauge", "Framebuffer memory."),
    "gpu_memory_used_ratio": MetricInfo("gauge", "Framebuffer memory in use as a share of total."),
    "gpu_temperature_celsius": MetricInfo("gauge", "GPU die temperature."),
    "gpu_memory_temperature_celsius": MetricInfo("gauge", "HBM temperature, where supported."),
    "gpu_power_watts": MetricInfo("gauge", "Power draw."),
    "gpu_power_limit_watts": MetricInfo("gauge", "Enforced power limit."),
    "gpu_energy_joules_total": MetricInfo("counter", "Energy used since the driver loaded."),
    "gpu_sm_clock_hertz": MetricInfo("gauge", "SM clock."),
    "gpu_memory_clock_hertz": MetricInfo("gauge", "Memory clock."),
    "gpu_throttle_reason": MetricInfo("gauge", "1 while this clock-throttle reason is active."),
    "gpu_pcie_replay_errors_total": MetricInfo("counter", "PCIe replays."),
    "gpu_ecc_errors_total": MetricInfo("counter", "ECC errors by type and counter scope."),
    "gpu_retired_pages": MetricInfo("gauge", "Pages retired, by cause."),
    "gpu_remapped_rows": MetricInfo("gauge", "Rows remapped, by kind."),
    "gpu_row_remap_pending": MetricInfo("gauge", "1 if a row remap waits for a GPU reset."),
    "gpu_row_remap_failed": MetricInfo("gauge", "1 if a row remap failed."),
    "gpu_fan_speed_ratio": MetricInfo("gauge", "Fan speed as a share of its maximum."),
    "gpu_nvlink_errors_total": MetricInfo("counter", "NVLink errors, all links, by counter."),
    "gpu_xid_errors_total": MetricInfo("counter", "Critical XID events, counted as they happen."),
    "gpu_xid_events_total": MetricInfo("counter", "All critical XID events of the GPU, from 0."),
    "gpu_process_memory_bytes": MetricInfo("gauge", "GPU memory used by a process."),
    "dsagent_nvml_up": MetricInfo("gauge", "1 while NVML is initialised."),
    "dsagent_nvml_timeouts_total": MetricInfo("counter", "GPU reads that outran gpu.timeout."),
}

THROTTLE_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}  # fmt: skip
# NVML field ids (stable ABI numbers) -> metric name and extra labels
FIELD_IDS: dict[int, tuple[str, tuple[tuple[str, str], ...]]] = {
    82: ("gpu_memory_temperature_celsius", ()),
    38: ("gpu_nvlink_errors_total", (("counter", "crc_flit"),)),
    45: ("gpu_nvlink_errors_total", (("counter", "crc_data"),)),
    52: ("gpu_nvlink_errors_total", (("counter", "replay"),)),
    59: ("gpu_nvlink_errors_total", (("counter", "recovery"),)),
}
_VALUE_ATTR = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}

# name, NVML call, scale to base units
SCALARS: list[tuple[str, Callable[[Any, Any], Any], float]] = [
    ("gpu_temperature_celsius", lambda n, h: n.nvmlDeviceGetTemperature(h, 0), 1.0),  # 0: GPU die
    ("gpu_power_watts", lambda n, h: n.nvmlDeviceGetPowerUsage(h), 1e-3),
    ("gpu_power_limit_watts", lambda n, h: n.nvmlDeviceGetEnforcedPowerLimit(h), 1e-3),
    ("gpu_energy_joules_total", lambda n, h: n.nvmlDeviceGetTotalEnergyConsumption(h), 1e-3),
    ("gpu_sm_clock_hertz", lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM), 1e6),
    ("gpu_memory_clock_hertz", lambda n, h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM), 1e6),
    ("gpu_pcie_replay_errors_total", lambda n, h: n.nvmlDeviceGetPcieReplayCounter(h), 1.0),
    ("gpu_fan_speed_ratio", lambda n, h: n.nvmlDeviceGetFanSpeed(h), 0.01),
]  # fmt: skip


def scalars(nvml: Any, h: Any) -> Iterator[Reading]:
    """Single-number fields."""
    for name, call, scale in SCALARS:
        value = field(partial(call, nvml, h))
        if value is not None:
            yield name, float(value) * scale, ()


def utilization_and_memory(nvml: Any, h: Any) -> Iterator[Reading]:
    """Utilization rates and framebuffer memory."""
    util = field(lambda: nvml.nvmlDeviceGetUtilizationRates(h))
    if util is not None:
        yield "gpu_utilization_ratio", util.gpu / 100, ()
        yield "gpu_memory_copy_utilization_ratio", util.memory / 100, ()
    mem = field(lambda: nvml.nvmlDeviceGetMemoryInfo(h))
    if mem is not None and mem.total:
        yield "gpu_memory_used_bytes", float(mem.used), ()
        yield "gpu_memory_total_bytes", float(mem.total), ()
        yield "gpu_memory_used_ratio", mem.used / mem.total, ()


def field_values(nvml: Any, h: Any) -> Iterator[Reading]:
    """HBM temperature and NVLink error totals in one field-values call (as DCGM reads them)."""
    values = field(lambda: nvml.nvmlDeviceGetFieldValues(h, list(FIELD_IDS)))
    for (name, extra), value in zip(FIELD_IDS.values(), values or [], strict=False):
        attr = _VALUE_ATTR.get(value.valueType)
        if value.nvmlReturn == 0 and attr:
            yield name, float(getattr(value.value, attr)), extra


def throttle(nvml: Any, h: Any) -> Iterator[Reading]:
    """Each clock-throttle reason as its own 0/1 series."""
    mask = field(lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))
    if mask is not None:
        for bit, reason in THROTTLE_REASONS.items():
            yield "gpu_throttle_reason", 1.0 if mask & bit else 0.0, (("reason", reason),)


def memory_errors(nvml: Any, h: Any) -> Iterator[Reading]:
    """ECC counts, retired pages and remapped rows."""
    for etype, ename in ((0, "corrected"), (1, "uncorrected")):
        for scope, sname in ((0, "volatile"), (1, "aggregate")):
            count = field(partial(nvml.nvmlDeviceGetTotalEccErrors, h, etype, scope))
            if count is not None:
                yield "gpu_ecc_errors_total", float(count), (("scope", sname), ("type", ename))
    for cause, cname in ((0, "single_bit_ecc"), (1, "double_bit_ecc")):
        pages = field(partial(nvml.nvmlDeviceGetRetiredPages, h, cause))
        if pages is not None:
            yield "gpu_retired_pages", float(len(pages)), (("cause", cname),)
    rows = field(lambda: nvml.nvmlDeviceGetRemappedRows(h))
    if rows is not None:
        corr, unc, pending, failed = rows
        yield "gpu_remapped_rows", float(corr), (("kind", "correctable"),)
        yield "gpu_remapped_rows", float(unc), (("kind", "uncorrectable"),)
        yield "gpu_row_remap_pending", 1.0 if pending else 0.0, ()
        yield "gpu_row_remap_failed", 1.0 if failed else 0.0, ()


READERS: list[Reader] = [utilization_and_memory, scalars, field_values, throttle, memory_errors]


def read_gpu(nvml: Any, handle: Any) -> list[Reading]:
    """Read every field of one GPU; raises GpuLost or NvmlDown, never for one absent field."""
    return [r for reader in READERS for r in reader(nvml, handle)]
