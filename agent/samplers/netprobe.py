"""Loss probes: packet loss ratio over a sliding window and round-trip time per target."""

from __future__ import annotations

import logging
import math
import socket
from collections import deque
from collections.abc import Iterator, Sequence

from agent.config import Config
from agent.samplers.probes import icmp_socket, run_round
from agent.store import MetricInfo, Sample, sample
from agent.targets import Target, parse_target

log = logging.getLogger(__name__)

# A target's kernel sends ICMP port-unreachable at about 1/s per source (net.ipv4.icmp_ratelimit,
# burst 6): more UDP probes than that per round would be answered by silence and look like loss.
UDP_PER_ROUND = 1

METRICS = {
    "net_packet_loss_ratio": MetricInfo(
        "gauge", "Probes lost as a share of probes sent over the loss window."
    ),
    "net_probe_rtt_seconds": MetricInfo("gauge", "Mean round-trip time of this round's replies."),
    "net_probes_sent_total": MetricInfo("counter", "Probes sent."),
    "net_probes_lost_total": MetricInfo("counter", "Probes with no reply before the timeout."),
}


def choose_method(target: Target) -> str:
    """Pick ICMP where this process may send it, else UDP to an unused port."""
    if target.method != "auto":
        return target.method
    try:
        family = socket.getaddrinfo(target.host, None)[0][0]
    except OSError:
        family = socket.AF_INET
    opened = icmp_socket(family)
    if opened is None:
        return "udp"
    opened[0].close()
    return "icmp"


class LossWindow:
    """Probe outcomes of one target over a sliding time window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._rounds: deque[tuple[float, int, int]] = deque()  # (ts, sent, lost)
        self.sent_total = 0
        self.lost_total = 0

    def add(self, now: float, sent: int, lost: int) -> None:
        """Record one round and forget rounds older than the window."""
        self._rounds.append((now, sent, lost))
        self.sent_total += sent
        self.lost_total += lost
        while self._rounds and self._rounds[0][0] <= now - self.window:
            self._rounds.popleft()

    def loss_ratio(self) -> float | None:
        """Return lost/sent over the window, None before any probe."""
        sent = sum(r[1] for r in self._rounds)
        return sum(r[2] for r in self._rounds) / sent if sent else None


class NetProbeSampler:
    """Sends a few probes per target every run and keeps a loss window for each."""

    name = "netprobe"
    blocking = True  # waits on the network: the round starts it first, on a thread of its own
    metrics = METRICS

    def __init__(self, targets: Sequence[Target], count: int, timeout: float, window: float):
        methods = [(t, choose_method(t)) for t in targets]
        self.plan = [(t, m, UDP_PER_ROUND if m == "udp" else count) for t, m in methods]
        self.timeout = timeout
        self.windows = {t.text: LossWindow(window) for t in targets}
        for target, method, n in self.plan:
            log.info("probing %s by %s, %d per round", target.text, method, n)

    def sample(self, now: float) -> Iterator[Sample]:
        """Run one round of probes and yield loss and RTT per target."""
        attempts = run_round(self.plan, self.timeout)
        for target, method, _ in self.plan:
            mine = [a for a in attempts if a.target == target]
            rtts = [a.rtt for a in mine if a.rtt is not None]
            window = self.windows[target.text]
            window.add(now, len(mine), len(mine) - len(rtts))
            labels = {"target": target.text, "method": method}
            loss = window.loss_ratio()
            if loss is not None:
                yield sample("net_packet_loss_ratio", loss, **labels)
            if rtts:
                yield sample("net_probe_rtt_seconds", math.fsum(rtts) / len(rtts), **labels)
            yield sample("net_probes_sent_total", window.sent_total, **labels)
            yield sample("net_probes_lost_total", window.lost_total, **labels)


def build(cfg: Config) -> NetProbeSampler | None:
    """Build the probe sampler, or None when no targets are configured."""
    net = cfg.network
    if not net.probe_targets:
        return None
    targets = [parse_target(t) for t in net.probe_targets]
    return NetProbeSampler(targets, net.probe_count, net.probe_timeout, net.loss_window)
