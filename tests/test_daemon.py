"""The agent as a process: signals, reload, logs."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import requests

from tests.conftest import AgentProcess, wait_for


def test_sigterm_exits_0_within_5s(agent_factory: Callable[..., AgentProcess]) -> None:
    agent = agent_factory()
    agent.wait_healthy()
    began = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=5) == 0
    assert time.monotonic() - began < 5
    assert "SIGTERM: shutting down" in agent.log()


def test_sighup_applies_a_good_config(agent_factory: Callable[..., AgentProcess]) -> None:
    agent = agent_factory()
    agent.wait_healthy()
    assert "net_packet_loss_ratio" not in agent.metrics()
    text = agent.config.read_text() + '\n[network]\nprobe_targets = ["tcp://127.0.0.1:1"]\n'
    agent.config.write_text(text)
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: (
            'net_packet_loss_ratio{method="tcp",target="tcp://127.0.0.1:1"} 0.0' in agent.metrics()
        ),
        what="the new probe target in /metrics",
    )
    assert "configuration reloaded" in agent.log()


def sent_total(agent: AgentProcess) -> float:
    for line in agent.metrics().splitlines():
        if line.startswith("net_probes_sent_total{"):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def test_sighup_with_a_bad_config_keeps_the_running_one(
    agent_factory: Callable[..., AgentProcess],
) -> None:
    agent = agent_factory('[network]\nprobe_targets = ["tcp://127.0.0.1:1"]\n')
    agent.wait_healthy()
    wait_for(lambda: sent_total(agent) > 0, what="first probes")
    agent.config.write_text(
        agent.config.read_text().replace("probe_targets", 'probe_count = "many"\nprobe_targets')
    )
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration" in agent.log(), what="refusal")
    assert f"{agent.config}:" in agent.log() and "network.probe_count" in agent.log()
    assert agent.proc.poll() is None
    before = sent_total(agent)
    wait_for(lambda: sent_total(agent) >= before + 8, what="probing to go on with the old config")
    assert requests.get(agent.url + "/healthz", timeout=2).status_code == 200


def test_json_logs_are_one_object_per_line(agent_factory: Callable[..., AgentProcess]) -> None:
    agent = agent_factory()
    agent.proc.terminate()
    agent.proc.wait(timeout=10)
    # start one with --log-format json by hand, reusing the factory's config
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--log-format",
            "json",
            "run",
            "--config",
            str(agent.config),
        ],
        cwd=ROOT,
        text=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: requests.get(agent.url + "/healthz", timeout=1).ok, what="json agent")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(e["msg"].startswith("dsagent started") for e in lines)
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in lines)
