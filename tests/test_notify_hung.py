"""A receiver that hangs 10 s, and a reload meanwhile: nothing else waits for it."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.conftest import AgentProcess, Sink, wait_for

RULES = """groups:
  - name: demo
    rules:
      - {alert: DemoA, expr: demo_a, op: ">=", thresholds: {critical: 1}, for: 0s}
      - {alert: DemoB, expr: demo_b, op: ">=", thresholds: {critical: 1}, for: 0s}
"""


def config(tmp: Path, url: str, stuck_timeout: str) -> str:
    (tmp / "rules.yml").write_text(RULES)
    return (
        f'[rules]\ndefaults = false\npaths = ["{tmp / "rules.yml"}"]\n'
        f'[textfile]\ndirectory = "{tmp / "prom"}"\n'
        f'[[receivers]]\nname = "stuck"\ntype = "webhook"\nurl = "{url}/stuck"\n'
        f'timeout = "{stuck_timeout}"\n'
        f'[[receivers]]\nname = "pager"\ntype = "webhook"\nurl = "{url}/pager"\n'
    )


def fired_at(state: Path, alert: str) -> float:
    """When the engine fired an alert: its transition's time in the alert log."""
    for line in (state / "alerts.log").read_text().splitlines():
        entry = json.loads(line)
        if entry["alertname"] == alert and entry["state"] == "firing":
            return datetime.fromisoformat(entry["@timestamp"].replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"{alert} never fired")


def paged(sink: Sink, alert: str) -> float | None:
    for r in sink.on("/pager"):
        names = {a["labels"]["alertname"] for a in r["json"]["alerts"]}  # type: ignore[index]
        if alert in names:
            return float(r["at"])  # type: ignore[arg-type]
    return None


class Readyz:
    """Polls /readyz every 50 ms from a thread and keeps how long each answer took."""

    def __init__(self, url: str) -> None:
        self.url, self.times, self.going = url, [], True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.going:
            began = time.monotonic()
            requests.get(self.url + "/readyz", timeout=15)
            self.times.append(time.monotonic() - began)
            time.sleep(0.05)

    def worst(self) -> float:
        self.going = False
        self.thread.join(20)
        return max(self.times)


@pytest.mark.integration
def test_a_hung_receiver_and_a_reload_delay_neither_another_receiver_nor_readyz(
    agent_factory: Callable[..., AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "demo.prom").write_text("demo_a 0\ndemo_b 0\n")
    sink.delay["/stuck"] = 10.0
    agent = agent_factory(config(tmp_path, sink.url, "12s"))
    agent.wait_healthy()
    probe = Readyz(agent.url)
    time.sleep(1)
    (prom / "demo.prom").write_text("demo_a 1\ndemo_b 0\n")
    wait_for(lambda: paged(sink, "DemoA") is not None, 10, "DemoA at the pager")
    state = agent.state
    base = paged(sink, "DemoA") - fired_at(state, "DemoA")  # type: ignore[operator]
    base_ready = probe.worst()
    # The stuck receiver now holds DemoA for 10 s. Reload with a new timeout for it (its sender
    # is replaced) and let DemoB fire at once.
    probe = Readyz(agent.url)
    agent.config.write_text(agent.render(config(tmp_path, sink.url, "11s")))
    began = time.monotonic()
    agent.proc.send_signal(signal.SIGHUP)
    (prom / "demo.prom").write_text("demo_a 1\ndemo_b 1\n")
    wait_for(lambda: paged(sink, "DemoB") is not None, 10, "DemoB at the pager")
    assert time.monotonic() - began < 5, "DemoB did not wait for the stuck receiver"
    wait_for(lambda: "configuration reloaded" in agent.log(), 10, "the reload")
    late = paged(sink, "DemoB") - fired_at(state, "DemoB")  # type: ignore[operator]
    assert late <= base + 0.1, f"DemoB took {late:.3f} s to the pager, {base:.3f} s before"
    time.sleep(1)
    worst = probe.worst()
    assert worst <= base_ready + 0.1, f"/readyz took {worst:.3f} s, {base_ready:.3f} s before"
    assert not sink.on("/stuck"), "the stuck receiver is still hanging on its first try"
    wait_for(lambda: len(sink.on("/stuck")) >= 2, 30, "the stuck receiver's notifications")
    sent = [sorted(a["labels"]["alertname"] for a in r["json"]["alerts"])  # type: ignore[index]
            for r in sink.on("/stuck")]  # fmt: skip
    assert sent.count(["DemoA"]) == 1, f"the try in flight was not sent again: {sent}"
