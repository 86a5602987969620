"""[hardware]: the node the deployment guide prescribes: ECC, InfiniBand, NVMe RAID, tuning."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from agent.config.types import Duration, Regex, Section

# The deployment guide's kernel tuning for an inference node: a reimage or an update reverts it.
GUIDE_SYSCTL: dict[str, int | str] = {
    "vm.swappiness": 0,
    "net.core.somaxconn": 65535,
    "net.ipv4.tcp_max_syn_backlog": 65535,
}


class HardwareConfig(Section):
    """[hardware]: ECC memory, InfiniBand, md RAID, NVMe health and kernel tuning."""

    interval: Duration = Field(default=10.0, gt=0)  # these change slowly; read less often
    sysctl: dict[str, int | str] = Field(default_factory=lambda: dict(GUIDE_SYSCTL))
    infiniband_expected_gbps: float = Field(default=0.0, ge=0)  # 0: the best rate seen
    infiniband_exclude: Regex | None = None  # matched against "device" and "device/port"
    nvme_health_log: bool = True  # read the SMART log (needs root or CAP_SYS_ADMIN)

    @field_validator("sysctl")
    @classmethod
    def _sysctl(cls, values: dict[str, int | str]) -> dict[str, int | str]:
        for name in values:
            if not re.fullmatch(r"[a-z0-9_]+(\.[A-Za-z0-9_-]+)+", name):
                raise ValueError(f"{name!r} is not a sysctl name like vm.swappiness")
        return values
