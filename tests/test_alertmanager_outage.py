"""Alertmanager goes down and comes back: a real Alertmanager 0.25, alone and as a clustered pair
on loopback. What reaches the on-call sink: no false resolve, no duplicate, nothing lost."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import AgentProcess, Sink, free_port, need_binary, wait_for

pytestmark = pytest.mark.integration
RULES = """groups:
  - name: outage
    rules:
      - alert: First
        expr: host_load1
        op: ">="
        thresholds: {{warning: 0}}
      - alert: Second
        expr: host_load1
        op: ">="
        thresholds: {{warning: {second}}}
"""
RESEND = 2.0  # endsAt = send time + 4 x resend_delay = 8 s: the outages below outlast it


class Alertmanager:
    """One prometheus-alertmanager process; it can be stopped and started on the same data."""

    def __init__(self, tmp: Path, name: str, sink: Sink, cluster: tuple[int, int] | None) -> None:
        self.binary = need_binary("prometheus-alertmanager")
        self.port, self.data = free_port(), tmp / f"{name}-data"
        self.config = tmp / f"{name}.yml"
        self.config.write_text(
            "route: {receiver: sink, group_by: [alertname], group_wait: 0s, group_interval: 1s,"
            " repeat_interval: 1h}\n"
            f"receivers: [{{name: sink, webhook_configs: [{{url: '{sink.url}/am',"
            " send_resolved: true}]}]\n"
        )
        self.log = tmp / f"{name}.log"
        self.cluster = cluster  # (own gossip port, peer's gossip port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, f"--config.file={self.config}", f"--storage.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        if self.cluster is None:
            args.append("--cluster.listen-address=")
        else:
            own, peer = self.cluster
            args += [f"--cluster.listen-address=127.0.0.1:{own}",
                     f"--cluster.advertise-address=127.0.0.1:{own}",
                     f"--cluster.peer=127.0.0.1:{peer}", "--cluster.peer-timeout=2s",
                     "--cluster.settle-timeout=5s", "--cluster.gossip-interval=100ms",
                     "--cluster.pushpull-interval=1s"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        wait_for(lambda: requests.get(self.url + "/-/ready", timeout=1).ok, 30, "alertmanager")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # a clean stop: Alertmanager writes its nflog snapshot
            self.proc.wait(timeout=30)
            self.proc = None


Managers = Callable[[int], list["Alertmanager"]]


@pytest.fixture
def managers(tmp_path: Path, sink: Sink) -> Iterator[Managers]:
    made: list[Alertmanager] = []

    def make(count: int) -> list[Alertmanager]:
        ports = [free_port() for _ in range(count)]
        for i in range(count):
            pair = (ports[i], ports[1 - i]) if count == 2 else None
            made.append(Alertmanager(tmp_path, f"am{i}", sink, pair))
        for am in made:
            am.start()
        return made

    yield make
    for am in made:
        am.stop()


def notified(sink: Sink) -> Counter[tuple[str, str]]:
    """Count (alertname, status) over every notification Alertmanager sent the sink."""
    seen: Counter[tuple[str, str]] = Counter()
    for request in sink.on("/am"):
        for alert in request["json"]["alerts"]:  # type: ignore[index]
            seen[(alert["labels"]["alertname"], alert["status"])] += 1
    return seen


def outage(agent_factory: Callable[..., AgentProcess], sink: Sink, ams: list[Alertmanager],
           tmp: Path) -> Counter[tuple[str, str]]:  # fmt: skip
    """Fire First; stop the first Alertmanager past endsAt; fire Second; bring it back."""
    rules = tmp / "outage.yml"
    rules.write_text(RULES.format(second=1e12))
    urls = ", ".join(f'"{am.url}"' for am in ams)
    agent = agent_factory(
        f'[notify]\nresend_delay = "{RESEND}s"\n[rules]\ndefaults = false\n'
        f'paths = ["{rules}"]\n[[receivers]]\nname = "am"\ntype = "alertmanager"\n'
        f"urls = [{urls}]\n"
    )
    wait_for(lambda: notified(sink)[("First", "firing")] >= 1, 30, "First notified")
    ams[0].stop()
    rules.write_text(RULES.format(second=0))
    agent.proc.send_signal(signal.SIGHUP)  # Second fires while the first Alertmanager is down
    time.sleep(5 * RESEND)  # past the endsAt that a replay of the queued First would carry
    if len(ams) == 2:
        wait_for(lambda: notified(sink)[("Second", "firing")] >= 1, 30, "Second via the peer")
    ams[0].start()
    wait_for(lambda: notified(sink)[("Second", "firing")] >= 1, 30, "Second notified")
    time.sleep(6 * RESEND)  # time for any replay, resolve or duplicate to reach the sink
    return notified(sink)


def test_a_restarted_alertmanager_gets_current_state_not_a_stale_replay(
    agent_factory: Callable[..., AgentProcess], sink: Sink, managers: Managers, tmp_path: Path
) -> None:
    seen = outage(agent_factory, sink, managers(1), tmp_path)
    assert seen == Counter({("First", "firing"): 1, ("Second", "firing"): 1}), seen


def test_an_ha_pair_loses_a_peer_without_a_false_resolve_or_a_duplicate(
    agent_factory: Callable[..., AgentProcess], sink: Sink, managers: Managers, tmp_path: Path
) -> None:
    seen = outage(agent_factory, sink, managers(2), tmp_path)
    assert seen == Counter({("First", "firing"): 1, ("Second", "firing"): 1}), seen
