"""Real packet loss: nftables drops packets in a network namespace; the probes see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.samplers.netprobe import LossWindow
from tests.conftest import ROOT, need, need_binary

pytestmark = pytest.mark.integration

CLIENT, SERVER = "10.254.77.1", "10.254.77.2"  # only inside the two namespaces made here

PROBE_SCRIPT = """
import json, subprocess, sys, time
from agent.samplers import netprobe
from agent.samplers.netprobe import NetProbeSampler
netprobe.UDP_PER_ROUND = 25  # the server namespace has its ICMP rate limit turned off
from agent.targets import parse_target
targets = [parse_target(t) for t in sys.argv[2:]]
sampler = NetProbeSampler(targets, count=25, timeout=0.3, window=600)
def rounds(n, t0):
    for i in range(n):
        out = {dict(s.labels)["method"]: s.value for s in sampler.sample(t0 + i)
               if s.name == "net_packet_loss_ratio"}
    return out
before = rounds(2, 1000.0)
subprocess.run(sys.argv[1], shell=True, check=True)
after = rounds(6, 1002.0)
print(json.dumps({"before": before, "after": after}))
"""


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    need(os.geteuid() == 0, "creating network namespaces needs root")
    need_binary("nft")
    need_binary("ip")
    tag = f"dsa{os.getpid() % 100000}"
    client, server = f"{tag}c", f"{tag}s"
    try:
        sh(f"ip netns add {client} && ip netns add {server}")
        sh(f"ip link add {tag}a netns {client} type veth peer name {tag}b netns {server}")
        for ns, dev, addr in ((client, f"{tag}a", CLIENT), (server, f"{tag}b", SERVER)):
            sh(
                f"ip -n {ns} addr add {addr}/30 dev {dev} && ip -n {ns} link set {dev} up"
                f" && ip -n {ns} link set lo up"
            )
        # Port-unreachable replies are rate-limited per source; the test sends 25 per round.
        sh(
            f"ip netns exec {server} sysctl -qw net.ipv4.icmp_ratelimit=0"
            " net.ipv4.icmp_msgs_per_sec=100000 net.ipv4.icmp_msgs_burst=100000"
        )
    except subprocess.CalledProcessError as exc:
        need(False, f"cannot build namespaces here: {exc.stderr!r}")
    yield client, server
    subprocess.run(f"ip netns del {client}; ip netns del {server}", shell=True, check=False)


def test_real_loss_moves_the_ratio(namespaces: tuple[str, str]) -> None:
    client, server = namespaces
    drop = (
        f"ip netns exec {server} nft add table inet dsaloss && "
        f"ip netns exec {server} nft add chain inet dsaloss input "
        "'{ type filter hook input priority 0 ; }' && "
        f"ip netns exec {server} nft add rule inet dsaloss input numgen random mod 4 == 0 drop"
    )
    targets = [f"icmp://{SERVER}", f"udp://{SERVER}:33434", f"tcp://{SERVER}:9"]
    out = subprocess.run(
        ["ip", "netns", "exec", client, sys.executable, "-c", PROBE_SCRIPT, drop, *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["before"] == {"icmp": 0.0, "udp": 0.0, "tcp": 0.0}
    # 50 clean probes, then 150 with a 1-in-4 drop: ~19 % lost over the window.
    for method, ratio in result["after"].items():
        assert 0.06 < ratio < 0.35, (method, ratio)


def test_loss_window_forgets_old_rounds() -> None:
    window = LossWindow(60)
    window.add(0.0, 10, 5)
    window.add(30.0, 10, 0)
    assert window.loss_ratio() == 0.25
    window.add(61.0, 10, 0)  # the round at t=0 has left the window
    assert window.loss_ratio() == 0.0
    assert (window.sent_total, window.lost_total) == (30, 5)
    assert LossWindow(60).loss_ratio() is None
