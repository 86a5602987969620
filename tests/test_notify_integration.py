"""Delivery end to end: a running agent, local receivers, a real Alertmanager, kill -9."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from agent.notify.outbox import Outbox
from tests.conftest import AgentProcess, Sink, free_port, need_binary, wait_for
from tests.test_cli import dsagent

RULE = """groups:
  - name: demo
    rules:
      - alert: LoadSeen
        expr: host_load1
        op: ">="
        thresholds: {{warning: {threshold}}}
        for: 2s
        annotations: {{summary: "load {{{{ $value }}}}"}}
"""


def config(tmp: Path, receivers: str, threshold: float = 0) -> str:
    rules = tmp / "demo.yml"
    rules.write_text(RULE.format(threshold=threshold))
    return (
        f'[rules]\ndefaults = false\npaths = ["{rules}"]\n'
        f'[[routes]]\nreceiver = "hook"\ngroup_interval = "1s"\n{receivers}'
    )


def started_at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_firing_then_resolved_signed_and_on_time(
    agent_factory: Callable[..., AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    hook = (
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
        f'secret_file = "{secret}"\n'
    )
    agent = agent_factory(config(tmp_path, hook))
    wait_for(lambda: len(sink.on("/hook")) >= 1, 20, "the firing notification")
    first = sink.on("/hook")[0]
    payload = first["json"]
    assert payload["status"] == "firing" and payload["version"] == "4"  # type: ignore[index]
    body = first["raw"]
    assert isinstance(body, bytes)
    headers = first["headers"]
    stamp = headers["X-Dsagent-Timestamp"]  # type: ignore[index]
    want = "sha256=" + hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Dsagent-Signature"] == want  # type: ignore[index]
    assert abs(float(first["at"]) - int(stamp)) < 5, "signed at the time of the try"  # type: ignore[arg-type]
    # condition first held at the sample before the evaluation (<= half an interval earlier)
    active_at = started_at(payload["alerts"][0]["startsAt"])  # type: ignore[index]
    assert float(first["at"]) - (active_at - 0.5) <= 2 + 2 * 1.0, "for + two sample intervals"  # type: ignore[arg-type]

    (tmp_path / "demo.yml").write_text(RULE.format(threshold=1e9))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: any(r["json"]["status"] == "resolved" for r in sink.on("/hook")),  # type: ignore[index]
        20,
        "the resolved notification",
    )
    log = (agent.state / "alerts.log").read_text().splitlines()
    assert [json.loads(x)["state"] for x in log] == ["pending", "firing", "resolved"]


def test_a_hanging_receiver_delays_nobody(
    agent_factory: Callable[..., AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    sink.delay["/slow"] = 30.0
    hooks = (
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/fast"\n'
        f'[[receivers]]\nname = "slow"\ntype = "webhook"\nurl = "{sink.url}/slow"\n'
        'timeout = "60s"\n[[routes]]\nreceiver = "slow"\n'
    )
    text = config(tmp_path, hooks).replace(
        'group_interval = "1s"\n', 'group_interval = "1s"\ncontinue = true\n'
    )
    agent = agent_factory(text)
    wait_for(lambda: len(sink.on("/fast")) >= 1, 20, "the fast receiver")
    assert sink.on("/slow") == [], "the slow one is still hanging"
    assert "ALERTS{" in agent.metrics(), "rule evaluation goes on"
    assert requests.get(agent.url + "/healthz", timeout=2).status_code == 200


def test_a_silence_mutes_notifications_but_not_the_alert_log(
    agent_factory: Callable[..., AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    hook = f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
    agent = agent_factory(config(tmp_path, hook))
    out = dsagent(
        "silence",
        "add",
        "alertname=LoadSeen",
        "--comment",
        "maintenance",
        "--config",
        str(agent.config),
    )
    assert out.returncode == 0, out.stderr
    silence_id = out.stdout.split()[0]
    wait_for(
        lambda: (
            '"state": "firing"' in (agent.state / "alerts.log").read_text()
            if (agent.state / "alerts.log").exists()
            else False
        ),
        20,
        "the alert to fire",
    )
    # the notifier has seen the firing alert and counted it muted: it would have sent it by now
    wait_for(lambda: "dsagent_alerts_suppressed 1.0" in agent.metrics(), 10, "the mute")
    assert sink.on("/hook") == []
    assert f'"silenced_by": "{silence_id}"' in (agent.state / "alerts.log").read_text()
    listed = dsagent("silence", "list", "--config", str(agent.config))
    assert silence_id in listed.stdout and "maintenance" in listed.stdout
    assert dsagent("silence", "expire", silence_id, "--config", str(agent.config)).returncode == 0
    wait_for(lambda: len(sink.on("/hook")) >= 1, 20, "delivery once the silence expired")


@pytest.fixture
def alertmanager(tmp_path: Path, sink: Sink) -> Iterator[str]:
    binary = need_binary("prometheus-alertmanager")
    port = free_port()
    cfg = tmp_path / "am.yml"
    cfg.write_text(
        "route: {receiver: sink, group_by: [alertname], group_wait: 0s, group_interval: 1s,"
        " repeat_interval: 1h}\n"
        "receivers: [{name: sink, webhook_configs: "
        f"[{{url: '{sink.url}/am', send_resolved: true}}]}}]\n"
    )
    log = (tmp_path / "am.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.path={tmp_path / 'amdata'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, "alertmanager ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.integration
def test_a_real_alertmanager_gets_firing_and_resolved(
    agent_factory: Callable[..., AgentProcess], sink: Sink, alertmanager: str, tmp_path: Path
) -> None:
    am = f'[[receivers]]\nname = "hook"\ntype = "alertmanager"\nurl = "{alertmanager}"\n'
    agent = agent_factory(config(tmp_path, am))
    wait_for(
        lambda: any(r["json"]["status"] == "firing" for r in sink.on("/am")),  # type: ignore[index]
        30,
        "Alertmanager's firing webhook",
    )
    alerts = requests.get(alertmanager + "/api/v2/alerts", timeout=5).json()
    assert [a["labels"]["alertname"] for a in alerts] == ["LoadSeen"]
    assert alerts[0]["labels"]["node"] and alerts[0]["annotations"]["summary"].startswith("load ")
    (tmp_path / "demo.yml").write_text(RULE.format(threshold=1e9))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: any(r["json"]["status"] == "resolved" for r in sink.on("/am")),  # type: ignore[index]
        30,
        "Alertmanager's resolved webhook",
    )


def test_outbox_survives_kill_9_in_order_and_once(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    port = free_port()  # nobody listens here yet: the receiver is dead
    hook = f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:{port}/hook"\n'
    text = config(tmp_path, hook, threshold=1e9)  # the rule never fires: only queued items go
    state = tmp_path / "state"
    outbox = Outbox(state / "outbox.db")
    keys = [f"n{i:03d}" for i in range(100)]
    for key in keys:
        outbox.put("hook#0", key, {"version": "4", "status": "firing", "alerts": [], "n": key})
    agent = agent_factory(f'[agent]\nstate_dir = "{state}"\n' + text)
    wait_for(
        lambda: (
            'dsagent_notifications_failed_total{receiver="hook#0"} 1.0' in agent.metrics()
            or 'failed_total{receiver="hook#0"} 2.0' in agent.metrics()
        ),
        20,
        "a failed try",
    )
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait()
    receiver = Sink(port)
    try:
        again = agent_factory(f'[agent]\nstate_dir = "{state}"\n' + text)
        wait_for(
            lambda: len({r["headers"]["Idempotency-Key"] for r in receiver.on("/hook")}) >= 100,  # type: ignore[index]
            60,
            "all 100 notifications",
        )
        got = [str(r["headers"]["Idempotency-Key"]).split("#")[0] for r in receiver.on("/hook")]  # type: ignore[index]
        assert got == keys, "in order, none twice"
        wait_for(
            lambda: 'dsagent_outbox_pending{receiver="hook#0"} 0.0' in again.metrics(),
            10,
            "an empty outbox",
        )
    finally:
        receiver.close()
