"""NVMe sampler: controller identity from sysfs, and the SMART / health log where permitted.

node_nvme_info is node_exporter's. The health log (critical warning, spare, wear, media errors)
is not in sysfs: it takes a Get Log Page admin command on /dev/nvmeX, which needs root or
CAP_SYS_ADMIN. Without it node_nvme_health_log_available is 0 and only the hwmon temperature
(kernel 5.5 and later) is read.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from agent.config import Config
from agent.samplers.sysfs import entries, read_int, read_text
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

NVME_CLASS = Path("class/nvme")
NVME_IOCTL_ADMIN_CMD = 0xC0484E41  # _IOWR('N', 0x41, struct nvme_admin_cmd), linux/nvme_ioctl.h
GET_LOG_PAGE, SMART_LOG, LOG_BYTES, ALL_NAMESPACES = 0x02, 0x02, 512, 0xFFFFFFFF
# struct nvme_passthru_cmd: opcode flags rsvd1 nsid cdw2 cdw3 metadata addr metadata_len
# data_len cdw10..cdw15 timeout_ms result (72 bytes)
ADMIN_CMD = struct.Struct("<BBHIIIQQII6III")
# critical warning bits (NVMe base specification, SMART / Health Information log, byte 0)
WARNINGS = ("spare_low", "temperature", "reliability", "read_only", "volatile_backup",
            "pmr_read_only")  # fmt: skip
DATA_UNIT = 512_000  # data units read/written count thousands of 512-byte blocks

METRICS = {
    "node_nvme_info": MetricInfo(
        "gauge", "Non-numeric data from /sys/class/nvme/<device>, value is always 1."
    ),
    "node_nvme_health_log_available": MetricInfo(
        "gauge", "1 if the SMART / health log could be read (needs root or CAP_SYS_ADMIN)."
    ),
    "node_nvme_critical_warning": MetricInfo("gauge", "1 while this critical warning bit is set."),
    "node_nvme_temperature_celsius": MetricInfo("gauge", "Composite temperature."),
    "node_nvme_available_spare_ratio": MetricInfo("gauge", "Spare capacity left."),
    "node_nvme_available_spare_threshold_ratio": MetricInfo(
        "gauge", "Spare capacity below which the drive warns."
    ),
    "node_nvme_percentage_used_ratio": MetricInfo(
        "gauge", "Vendor estimate of life used; may pass 1."
    ),
    "node_nvme_media_errors_total": MetricInfo("counter", "Unrecovered data integrity errors."),
    "node_nvme_unsafe_shutdowns_total": MetricInfo("counter", "Unsafe shutdowns."),
    "node_nvme_error_log_entries_total": MetricInfo("counter", "Error information log entries."),
    "node_nvme_power_on_seconds_total": MetricInfo("counter", "Power-on time."),
    "node_nvme_data_read_bytes_total": MetricInfo("counter", "Data read by the host."),
    "node_nvme_data_written_bytes_total": MetricInfo("counter", "Data written by the host."),
}

LogReader = Callable[[Path], bytes]


def read_smart_log(device: Path) -> bytes:
    """Return the controller's SMART / health log page through the admin passthrough ioctl."""
    buf = ctypes.create_string_buffer(LOG_BYTES)
    dwords = LOG_BYTES // 4 - 1
    cmd = bytearray(ADMIN_CMD.pack(GET_LOG_PAGE, 0, 0, ALL_NAMESPACES, 0, 0, 0,
                                   ctypes.addressof(buf), 0, LOG_BYTES,
                                   (dwords << 16) | SMART_LOG, 0, 0, 0, 0, 0, 0, 0))  # fmt: skip
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd, True)
    finally:
        os.close(fd)
    return buf.raw


def _u128(log: bytes, at: int) -> int:
    return int.from_bytes(log[at : at + 16], "little")


class Health(NamedTuple):
    """A parsed health log: metric values in base units, and each critical warning bit."""

    values: dict[str, float]
    warnings: dict[str, int]


NO_HEALTH = Health({}, {})


def parse_smart_log(log: bytes) -> Health:
    """Return the health log's fields; a short page gives NO_HEALTH."""
    if len(log) < LOG_BYTES:
        return NO_HEALTH
    kelvin = int.from_bytes(log[1:3], "little")
    out = {
        "node_nvme_available_spare_ratio": log[3] / 100,
        "node_nvme_available_spare_threshold_ratio": log[4] / 100,
        "node_nvme_percentage_used_ratio": log[5] / 100,
        "node_nvme_data_read_bytes_total": _u128(log, 32) * DATA_UNIT,
        "node_nvme_data_written_bytes_total": _u128(log, 48) * DATA_UNIT,
        "node_nvme_power_on_seconds_total": _u128(log, 128) * 3600,
        "node_nvme_unsafe_shutdowns_total": _u128(log, 144),
        "node_nvme_media_errors_total": _u128(log, 160),
        "node_nvme_error_log_entries_total": _u128(log, 176),
    }
    if kelvin:
        out["node_nvme_temperature_celsius"] = kelvin - 273
    return Health(out, {name: (log[0] >> bit) & 1 for bit, name in enumerate(WARNINGS)})


def hwmon_celsius(ctrl: Path) -> float | None:
    """Return the controller's hwmon composite temperature (millidegrees in sysfs), if any."""
    for base in (ctrl, ctrl / "device" / "hwmon"):
        for hwmon in entries(base, "hwmon"):
            value = read_int(base / hwmon / "temp1_input")
            if value is not None:
                return value / 1000
    return None


class NvmeSampler:
    """NVMe controllers under /sys/class/nvme, their health log from /dev where permitted."""

    name = "nvme"
    metrics = METRICS

    def __init__(self, sys_root: Path, dev_root: Path, interval: float,
                 read_log: LogReader | None = read_smart_log) -> None:  # fmt: skip
        self.root, self.dev = sys_root / NVME_CLASS, dev_root
        self.interval = interval
        self.read_log = read_log  # None: the health log is off in the configuration
        self._refused: set[str] = set()  # controllers whose refusal was logged

    def sample(self, now: float) -> Iterator[Sample]:
        """Read every controller."""
        for ctrl in entries(self.root, "nvme"):
            path = self.root / ctrl
            yield sample("node_nvme_info", 1, device=ctrl,
                         firmware_revision=read_text(path / "firmware_rev") or "",
                         model=read_text(path / "model") or "",
                         serial=read_text(path / "serial") or "",
                         state=read_text(path / "state") or "",
                         cntlid=read_text(path / "cntlid") or "")  # fmt: skip
            health = self._health(ctrl)
            yield sample("node_nvme_health_log_available", bool(health.values), device=ctrl)
            if "node_nvme_temperature_celsius" not in health.values:
                celsius = hwmon_celsius(path)
                if celsius is not None:
                    yield sample("node_nvme_temperature_celsius", celsius, device=ctrl)
            for name, value in health.values.items():
                yield sample(name, value, device=ctrl)
            for warning, bit in health.warnings.items():
                yield sample("node_nvme_critical_warning", bit, device=ctrl, warning=warning)

    def _health(self, ctrl: str) -> Health:
        if self.read_log is None:
            return NO_HEALTH
        try:
            return parse_smart_log(self.read_log(self.dev / ctrl))
        except OSError as exc:
            if ctrl not in self._refused:
                self._refused.add(ctrl)
                log.info("nvme %s: health log not readable (%s); it needs root or "
                         "CAP_SYS_ADMIN. Reading sysfs only", ctrl, exc.strerror)  # fmt: skip
            return NO_HEALTH


def build(cfg: Config) -> NvmeSampler:
    """Build the NVMe sampler."""
    hw = cfg.hardware
    reader = read_smart_log if hw.nvme_health_log else None
    return NvmeSampler(cfg.host.sys_root, cfg.host.dev_root, hw.interval, reader)
