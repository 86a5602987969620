"""InfiniBand/RDMA sampler: port state, rate and the standard and hw counters per port.

Names and labels as node_exporter's infiniband collector (data counters count 4-byte words, so
they are multiplied by 4 into bytes, as it does). Unlike it, a device that lacks a file (irdma,
i40iw: no counters, "N/A (no PMA)", no fw_ver) loses that value only, never the whole family.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.samplers.sysfs import entries, read_int, read_text
from agent.store import MetricInfo, Sample, sample

IB_CLASS = Path("class/infiniband")
ACTIVE = 4  # state "4: ACTIVE"
# counters/<file> -> node_exporter's metric suffix, and the scale into its unit
COUNTERS: dict[str, tuple[str, int]] = {
    "excessive_buffer_overrun_errors": ("excessive_buffer_overrun_errors_total", 1),
    "link_downed": ("link_downed_total", 1),
    "link_error_recovery": ("link_error_recovery_total", 1),
    "local_link_integrity_errors": ("local_link_integrity_errors_total", 1),
    "multicast_rcv_packets": ("multicast_packets_received_total", 1),
    "multicast_xmit_packets": ("multicast_packets_transmitted_total", 1),
    "port_rcv_constraint_errors": ("port_constraint_errors_received_total", 1),
    "port_rcv_data": ("port_data_received_bytes_total", 4),
    "port_rcv_discards": ("port_discards_received_total", 1),
    "port_rcv_errors": ("port_errors_received_total", 1),
    "port_rcv_packets": ("port_packets_received_total", 1),
    "port_rcv_remote_physical_errors": ("port_receive_remote_physical_errors_total", 1),
    "port_rcv_switch_relay_errors": ("port_receive_switch_relay_errors_total", 1),
    "port_xmit_constraint_errors": ("port_constraint_errors_transmitted_total", 1),
    "port_xmit_data": ("port_data_transmitted_bytes_total", 4),
    "port_xmit_discards": ("port_discards_transmitted_total", 1),
    "port_xmit_packets": ("port_packets_transmitted_total", 1),
    "port_xmit_wait": ("port_transmit_wait_total", 1),
    "symbol_error": ("symbol_error_total", 1),
    "unicast_rcv_packets": ("unicast_packets_received_total", 1),
    "unicast_xmit_packets": ("unicast_packets_transmitted_total", 1),
    "VL15_dropped": ("vl15_dropped_total", 1),
}
# hw_counters/<file> that node_exporter names; any other is node_infiniband_hw_counters_total
HW_COUNTERS = {
    "duplicate_request": "duplicate_requests_packets_total",
    "implied_nak_seq_err": "implied_nak_seq_errors_total",
    "local_ack_timeout_err": "local_ack_timeout_errors_total",
    "np_cnp_sent": "np_cnp_packets_sent_total",
    "np_ecn_marked_roce_packets": "np_ecn_marked_roce_packets_received_total",
    "out_of_buffer": "out_of_buffer_drops_total",
    "out_of_sequence": "out_of_sequence_packets_received_total",
    "packet_seq_err": "packet_sequence_errors_total",
    "rnr_nak_retry_err": "rnr_nak_retry_packets_received_total",
    "rp_cnp_handled": "rp_cnp_packets_handled_total",
    "rp_cnp_ignored": "rp_cnp_ignored_packets_received_total",
}
NOT_COUNTERS = {"lifespan"}  # hw_counters/lifespan is a period in ms


def _help(text: str) -> MetricInfo:
    return MetricInfo("counter", text)


METRICS = {
    "node_infiniband_info": MetricInfo(
        "gauge", "Non-numeric data from /sys/class/infiniband/<device>, value is always 1."
    ),
    "node_infiniband_state_id": MetricInfo(
        "gauge", "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, "
        "4: active, 5: act defer)",
    ),
    "node_infiniband_physical_state_id": MetricInfo(
        "gauge", "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, "
        "3: disable, 4: shift, 5: link up, 6: link error recover, 7: phytest)",
    ),
    "node_infiniband_rate_bytes_per_second": MetricInfo("gauge", "Maximum signal transfer rate"),
    "node_infiniband_rate_expected_bytes_per_second": MetricInfo(
        "gauge", "The rate the port should run at: hardware.infiniband_expected_gbps, or the "
        "best rate seen since the agent started.",
    ),
    "node_infiniband_rate_below_expected": MetricInfo(
        "gauge", "1 while the port runs below its expected rate (it trained down)."
    ),
    "node_infiniband_hw_counters_total": MetricInfo(
        "counter", "A driver's hw_counters file node_exporter does not name, by file name."
    ),
    **{f"node_infiniband_{m}": _help(f"The port's counters/{f} ({'bytes' if s == 4 else 'count'})")
       for f, (m, s) in COUNTERS.items()},
    **{f"node_infiniband_{m}": _help(f"The port's hw_counters/{f}.")
       for f, m in HW_COUNTERS.items()},
}  # fmt: skip

_STATE = re.compile(r"^\s*(\d+)\s*:")
_RATE = re.compile(r"^\s*([0-9.]+)\s*Gb/sec")


def parse_state(text: str | None) -> int | None:
    """Return the number of a state file such as "4: ACTIVE" or "5: LinkUp"."""
    match = _STATE.match(text or "")
    return int(match.group(1)) if match else None


def parse_rate(text: str | None) -> float | None:
    """Return a rate file such as "100 Gb/sec (4X EDR)" in bytes per second."""
    match = _RATE.match(text or "")
    return float(match.group(1)) * 125_000_000 if match else None


def counter_samples(port: Path, device: str, number: str) -> Iterator[Sample]:
    """Yield the port's counters and hw_counters that read as numbers."""
    for name in entries(port / "counters"):
        known = COUNTERS.get(name)
        if known and (value := read_int(port / "counters" / name)) is not None:
            yield sample(f"node_infiniband_{known[0]}", value * known[1], device=device,
                         port=number)  # fmt: skip
    for name in entries(port / "hw_counters"):
        value = read_int(port / "hw_counters" / name)
        if value is None or name in NOT_COUNTERS:
            continue
        if name in HW_COUNTERS:
            yield sample(f"node_infiniband_{HW_COUNTERS[name]}", value, device=device, port=number)
        else:
            yield sample("node_infiniband_hw_counters_total", value, device=device, port=number,
                         counter=name)  # fmt: skip


class InfinibandSampler:
    """Every RDMA device under /sys/class/infiniband (InfiniBand and RoCE ports)."""

    name = "infiniband"
    metrics = METRICS

    def __init__(self, sys_root: Path, interval: float, expected_gbps: float = 0.0,
                 exclude: str | None = None) -> None:  # fmt: skip
        self.root = sys_root / IB_CLASS
        self.interval = interval
        self.expected = expected_gbps * 125_000_000
        self.exclude = re.compile(exclude) if exclude else None
        self._best: dict[tuple[str, str], float] = {}  # the best rate each port has shown

    def sample(self, now: float) -> Iterator[Sample]:
        """Read every device's identity and every port."""
        for device in entries(self.root):
            if self._excluded(device):
                continue
            path = self.root / device
            yield sample("node_infiniband_info", 1, device=device,
                         board_id=read_text(path / "board_id") or "",
                         firmware_version=read_text(path / "fw_ver") or "",
                         hca_type=read_text(path / "hca_type") or "")  # fmt: skip
            for number in entries(path / "ports"):
                if number.isdigit() and not self._excluded(f"{device}/{number}"):
                    yield from self._port(path / "ports" / number, device, number)

    def _excluded(self, name: str) -> bool:
        return self.exclude is not None and self.exclude.fullmatch(name) is not None

    def _port(self, port: Path, device: str, number: str) -> Iterator[Sample]:
        labels = {"device": device, "port": number}
        state = parse_state(read_text(port / "state"))
        if state is not None:
            yield sample("node_infiniband_state_id", state, **labels)
        phys = parse_state(read_text(port / "phys_state"))
        if phys is not None:
            yield sample("node_infiniband_physical_state_id", phys, **labels)
        rate = parse_rate(read_text(port / "rate"))
        if rate is not None:
            yield sample("node_infiniband_rate_bytes_per_second", rate, **labels)
            if state == ACTIVE:  # a port that is down says nothing about its trained rate
                best = self._best[device, number] = max(rate, self._best.get((device, number), 0))
                expected = max(self.expected, best)
                yield sample("node_infiniband_rate_expected_bytes_per_second", expected, **labels)
                yield sample("node_infiniband_rate_below_expected", rate < expected, **labels)
        yield from counter_samples(port, device, number)


def build(cfg: Config) -> InfinibandSampler:
    """Build the InfiniBand sampler."""
    hw = cfg.hardware
    return InfinibandSampler(cfg.host.sys_root, hw.interval, hw.infiniband_expected_gbps,
                             hw.infiniband_exclude)  # fmt: skip
