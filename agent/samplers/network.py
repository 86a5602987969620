"""Network sampler: per-interface traffic, errors and drops; TCP retransmissions."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from agent.config import Config
from agent.files import KernelFiles
from agent.samplers.counters import CounterDeltas, ratio
from agent.store import Labels, MetricInfo, Sample, sample

METRICS = {
    "net_interface_bytes_per_second": MetricInfo("gauge", "Bytes per second by direction."),
    "net_interface_packets_per_second": MetricInfo("gauge", "Packets per second by direction."),
    "net_interface_errors_per_second": MetricInfo("gauge", "Errors per second by direction."),
    "net_interface_drops_per_second": MetricInfo("gauge", "Drops per second by direction."),
    "net_interface_drop_ratio": MetricInfo(
        "gauge", "Dropped packets as a share of packets seen, both directions, over the interval."
    ),
    "net_tcp_retransmit_ratio": MetricInfo(
        "gauge", "TCP segments retransmitted as a share of segments sent over the interval."
    ),
}

# /proc/net/dev columns after the interface name: rx bytes packets errs drop, tx at offset 8
_RX, _TX = (0, 1, 2, 3), (8, 9, 10, 11)
_KINDS = ("bytes", "packets", "errors", "drops")


def parse_net_dev(text: str) -> dict[str, tuple[float, ...]]:
    """Return rx and tx bytes, packets, errors, drops per interface; bad lines are skipped."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 16:
            continue
        try:
            out[name.strip()] = tuple(float(fields[i]) for i in _RX + _TX)
        except ValueError:
            continue
    return out


def parse_snmp(text: str, only: str | None = None) -> dict[str, dict[str, float]]:
    """Return /proc/net/snmp as {protocol: {field: value}} (`only` one protocol, if given)."""
    out: dict[str, dict[str, float]] = {}
    lines = text.splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        proto, _, names = head.partition(":")
        vproto, _, nums = values.partition(":")
        if proto != vproto or (only is not None and proto.strip() != only):
            continue
        row = {}
        for key, num in zip(names.split(), nums.split(), strict=False):
            try:
                row[key] = float(num)
            except ValueError:
                continue
        out[proto.strip()] = row
    return out


_NAMES = [f"net_interface_{kind}_per_second" for kind in _KINDS]


@functools.lru_cache(maxsize=1024)  # bounded: interfaces come and go (containers' veths)
def _labels(iface: str) -> tuple[Labels, Labels, Labels]:
    """Return an interface's rx, tx and own label sets, built once."""
    return ((("direction", "rx"), ("interface", iface)),
            (("direction", "tx"), ("interface", iface)), (("interface", iface),))  # fmt: skip


def interface_samples(iface: str, d: tuple[float, ...], dt: float) -> Iterator[Sample]:
    """Turn one interface's counter deltas over dt seconds into samples."""
    rx, tx, own = _labels(iface)
    for i, name in enumerate(_NAMES):
        yield Sample(name, d[i] / dt, rx)
        yield Sample(name, d[i + 4] / dt, tx)
    drops = d[3] + d[7]
    yield Sample("net_interface_drop_ratio", ratio(drops, d[1] + d[5] + drops), own)


class NetworkSampler:
    """Interfaces from /proc/net/dev and TCP counters from /proc/net/snmp."""

    name = "network"
    metrics = METRICS

    def __init__(self, proc_root: Path, exclude: str) -> None:
        self.proc = proc_root
        self.exclude = re.compile(exclude)
        self._ifaces: CounterDeltas[str] = CounterDeltas()
        self._tcp: CounterDeltas[str] = CounterDeltas()
        self._files = KernelFiles()

    def sample(self, now: float) -> Iterator[Sample]:
        """Read the interface and TCP counters and yield rates since the previous run."""
        stats = parse_net_dev(self._files.read(self.proc, "net/dev"))
        keep = {k: v for k, v in stats.items() if not self.exclude.search(k)}
        dt, deltas = self._ifaces.update(now, keep)
        for iface, d in sorted(deltas.items()):
            yield from interface_samples(iface, d, dt)
        tcp = parse_snmp(self._files.read(self.proc, "net/snmp"), "Tcp").get("Tcp", {})
        counters = (
            {"tcp": (tcp["OutSegs"], tcp["RetransSegs"])}
            if {"OutSegs", "RetransSegs"} <= tcp.keys()
            else {}
        )
        _, tcp_deltas = self._tcp.update(now, counters)
        if "tcp" in tcp_deltas:
            out, retrans = tcp_deltas["tcp"]
            yield sample("net_tcp_retransmit_ratio", ratio(retrans, out))

    def close(self) -> None:
        """Close the kept files."""
        self._files.close()


def build(cfg: Config) -> NetworkSampler:
    """Build the network sampler."""
    return NetworkSampler(cfg.host.proc_root, cfg.host.interface_exclude)
