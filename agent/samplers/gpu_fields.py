"""What is read from each GPU: one small reader per NVML call; unsupported fields stay absent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynvml import NVML_CLOCK_MEM, NVML_CLOCK_SM, NVML_TEMPERATURE_GPU

from agent.nvml import Device, ask
from agent.store import Labels, MetricInfo, Sample

Reader = Callable[[Any, Device], list[Sample]]

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
    "gpu_info": MetricInfo("gauge", "A GPU's identity and architecture; always 1."),
    "node_gpu_architectures": MetricInfo(
        "gauge", "Distinct GPU architectures on the node (the guide: never mix them)."
    ),
    "node_gpu_models": MetricInfo("gauge", "Distinct GPU models on the node."),
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
_FIELD_LIST = list(FIELD_IDS)
_VALUE_ATTR = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}

Scalar = tuple[str, str, tuple[int, ...], float]
# name, NVML function, its arguments after the handle, scale to base units
SCALARS: list[Scalar] = [
    ("gpu_temperature_celsius", "nvmlDeviceGetTemperature", (NVML_TEMPERATURE_GPU,), 1.0),
    ("gpu_power_watts", "nvmlDeviceGetPowerUsage", (), 1e-3),
    ("gpu_energy_joules_total", "nvmlDeviceGetTotalEnergyConsumption", (), 1e-3),
    ("gpu_sm_clock_hertz", "nvmlDeviceGetClockInfo", (NVML_CLOCK_SM,), 1e6),
    ("gpu_memory_clock_hertz", "nvmlDeviceGetClockInfo", (NVML_CLOCK_MEM,), 1e6),
    ("gpu_fan_speed_ratio", "nvmlDeviceGetFanSpeed", (), 0.01),
]
SLOW_SCALARS: list[Scalar] = [
    ("gpu_power_limit_watts", "nvmlDeviceGetEnforcedPowerLimit", (), 1e-3),
    ("gpu_pcie_replay_errors_total", "nvmlDeviceGetPcieReplayCounter", (), 1.0),
]


def scalars(nvml: Any, dev: Device, table: list[Scalar] = SCALARS) -> list[Sample]:
    """Single-number fields."""
    h, labels = dev.handle, dev.labels
    out = []
    for name, func, args, scale in table:
        value = ask(dev, name, getattr(nvml, func), h, *args)
        if value is not None:
            out.append(Sample(name, float(value) * scale, labels))
    return out


def utilization_and_memory(nvml: Any, dev: Device) -> list[Sample]:
    """Utilization rates and framebuffer memory."""
    h, labels = dev.handle, dev.labels
    out = []
    util = ask(dev, "utilization", nvml.nvmlDeviceGetUtilizationRates, h)
    if util is not None:
        out.append(Sample("gpu_utilization_ratio", util.gpu / 100, labels))
        out.append(Sample("gpu_memory_copy_utilization_ratio", util.memory / 100, labels))
    # v2 leaves out what the driver reserves, as nvidia-smi does; drivers before 510 know only v1
    mem = ask(dev, "memory_v2", nvml.nvmlDeviceGetMemoryInfo, h, nvml.nvmlMemory_v2)
    if mem is None:
        mem = ask(dev, "memory", nvml.nvmlDeviceGetMemoryInfo, h)
    if mem is not None and mem.total:
        out.append(Sample("gpu_memory_used_bytes", float(mem.used), labels))
        out.append(Sample("gpu_memory_total_bytes", float(mem.total), labels))
        out.append(Sample("gpu_memory_used_ratio", mem.used / mem.total, labels))
    return out


def field_values(nvml: Any, dev: Device) -> list[Sample]:
    """HBM temperature and NVLink error totals in one field-values call (as DCGM reads them)."""
    values = ask(dev, "fields", nvml.nvmlDeviceGetFieldValues, dev.handle, _FIELD_LIST)
    out = []
    for (name, extra), value in zip(FIELD_IDS.values(), values or [], strict=False):
        attr = _VALUE_ATTR.get(value.valueType)
        if value.nvmlReturn == 0 and attr:
            out.append(Sample(name, float(getattr(value.value, attr)), dev.labelled(extra)))
    return out


# Label sets built once: these run for every GPU every round.
_THROTTLE: list[tuple[int, Labels]] = [
    (bit, (("reason", reason),)) for bit, reason in THROTTLE_REASONS.items()
]
_ECC: list[tuple[int, int, str, Labels]] = [
    (etype, scope, f"ecc{etype}{scope}", (("scope", sname), ("type", ename)))
    for etype, ename in ((0, "corrected"), (1, "uncorrected"))
    for scope, sname in ((0, "volatile"), (1, "aggregate"))
]
_RETIRED: list[tuple[int, str, Labels]] = [
    (0, "retired0", (("cause", "single_bit_ecc"),)),
    (1, "retired1", (("cause", "double_bit_ecc"),)),
]
_ROWS = ((("kind", "correctable"),), (("kind", "uncorrectable"),))


def throttle(nvml: Any, dev: Device) -> list[Sample]:
    """Each clock-throttle reason as its own 0/1 series.

    Drivers from 535 on call them clock event reasons; older ones know only the first name.
    """
    h = dev.handle
    mask = ask(dev, "event_reasons", nvml.nvmlDeviceGetCurrentClocksEventReasons, h)
    if mask is None:
        mask = ask(dev, "throttle", nvml.nvmlDeviceGetCurrentClocksThrottleReasons, h)
    if mask is None:
        return []
    labelled = dev.labelled
    return [
        Sample("gpu_throttle_reason", 1.0 if mask & bit else 0.0, labelled(extra))
        for bit, extra in _THROTTLE
    ]


def memory_errors(nvml: Any, dev: Device) -> list[Sample]:
    """ECC counts, retired pages and remapped rows."""
    h, labelled = dev.handle, dev.labelled
    out = []
    for etype, scope, key, extra in _ECC:
        count = ask(dev, key, nvml.nvmlDeviceGetTotalEccErrors, h, etype, scope)
        if count is not None:
            out.append(Sample("gpu_ecc_errors_total", float(count), labelled(extra)))
    for cause, key, extra in _RETIRED:
        pages = ask(dev, key, nvml.nvmlDeviceGetRetiredPages, h, cause)
        if pages is not None:
            out.append(Sample("gpu_retired_pages", float(len(pages)), labelled(extra)))
    rows = ask(dev, "remap", nvml.nvmlDeviceGetRemappedRows, h)
    if rows is not None:
        corr, unc, pending, failed = rows
        out.append(Sample("gpu_remapped_rows", float(corr), labelled(_ROWS[0])))
        out.append(Sample("gpu_remapped_rows", float(unc), labelled(_ROWS[1])))
        out.append(Sample("gpu_row_remap_pending", 1.0 if pending else 0.0, dev.labels))
        out.append(Sample("gpu_row_remap_failed", 1.0 if failed else 0.0, dev.labels))
    return out


def slow_scalars(nvml: Any, dev: Device) -> list[Sample]:
    """Read the power limit and PCIe replays."""
    return scalars(nvml, dev, SLOW_SCALARS)


READERS: list[Reader] = [utilization_and_memory, scalars, throttle]
# Error counters, limits and the HBM temperature: they change seldom (a rule on them looks at
# minutes), and each is a driver call per GPU; read every SLOW_EVERY seconds.
SLOW_READERS: list[Reader] = [slow_scalars, field_values, memory_errors]
SLOW_EVERY = 10.0


def read_gpu(nvml: Any, dev: Device, readers: list[Reader] = READERS) -> list[Sample]:
    """Read fields of one GPU; raises GpuLost or NvmlDown, never for one absent field."""
    out: list[Sample] = []
    for reader in readers:
        out += reader(nvml, dev)
    return out
