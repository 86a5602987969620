"""Reload and restart on a running agent: nothing sent twice, no auth left behind, never a crash."""

from __future__ import annotations

import base64
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from tests.conftest import AgentProcess, Sink, wait_for

pytestmark = pytest.mark.integration

RULE = """groups:
  - name: textfile
    rules:
      - alert: ValueHigh
        expr: demo_value
        thresholds: {critical: 0.5}
        annotations: {summary: "value {{ $value }}"}
"""


def statuses(sink: Sink) -> list[str]:
    return [a["status"] for r in sink.on("/hook") for a in r["json"]["alerts"]]  # type: ignore[index]


def write_value(textdir: Path, value: float) -> None:
    tmp = textdir / "demo.prom.tmp"
    tmp.write_text(f"demo_value {value}\n")
    tmp.replace(textdir / "demo.prom")


@pytest.fixture
def textfile_agent(tmp_path: Path, sink: Sink) -> Iterator[Callable[[], AgentProcess]]:
    """Agents (one after another) over one state dir, a textfile value, one webhook."""
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    write_value(textdir, 0)
    (tmp_path / "rules.yml").write_text(RULE)
    config = (
        f'[textfile]\ndirectory = "{textdir}"\n'
        f'[rules]\ndefaults = false\npaths = ["{tmp_path / "rules.yml"}"]\n'
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
        '[[routes]]\nreceiver = "hook"\ngroup_interval = "1s"\nrepeat_interval = "4h"\n'
    )
    started: list[AgentProcess] = []

    def start() -> AgentProcess:
        agent = AgentProcess(tmp_path, config)
        started.append(agent)
        agent.wait_healthy()
        return agent

    yield start
    for agent in started:
        agent.stop()


def reloaded(agent: AgentProcess, times: int) -> Callable[[], bool]:
    return lambda: agent.log().count("configuration reloaded") >= times


def test_a_sighup_or_a_kill_9_does_not_page_again(
    textfile_agent: Callable[[], AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    agent = textfile_agent()
    write_value(tmp_path / "textfile", 1)
    wait_for(lambda: statuses(sink) == ["firing"], 15, "the firing notification")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(reloaded(agent, 1), 10, "the reload")
    wait_for(lambda: "dsagent_config_last_reload_successful 1.0" in agent.metrics(), 10, "metric")
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(reloaded(agent, 2), 10, "the second reload")
    # A resend after a reload would go out on the next round, before the resolve below.
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(10)
    again = textfile_agent()  # a new process over the same state dir
    wait_for(lambda: 'alertstate="firing"' in again.metrics(), 15, "the restored alert")
    write_value(tmp_path / "textfile", 0)
    wait_for(lambda: "resolved" in statuses(sink), 15, "the resolve, from the new process")
    assert statuses(sink) == ["firing", "resolved"]
    keys = [r["headers"]["Idempotency-Key"] for r in sink.on("/hook")]  # type: ignore[index]
    assert len(set(keys)) == 2


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_reload_drops_removed_tokens_and_old_passwords(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    admin, viewer = tmp_path / "admin.token", tmp_path / "viewer.token"
    admin.write_text("admin-one\n")
    viewer.write_text("viewer-one\n")
    web = tmp_path / "web.yml"

    def users(password: bytes) -> None:
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
        web.write_text(f"basic_auth_users:\n  prom: {hashed}\n")

    users(b"pw-one")
    tokens = (
        f'[[api_tokens]]\nname = "root"\nrole = "admin"\ntoken_file = "{admin}"\n'
        f'[[api_tokens]]\nname = "look"\nrole = "viewer"\ntoken_file = "{viewer}"\n'
    )
    agent = agent_factory(f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{web}"\n{tokens}')
    agent.wait_healthy()
    who = agent.url + "/api/v1/whoami"
    assert requests.get(who, headers=bearer("viewer-one"), timeout=5).status_code == 200
    assert requests.get(agent.url + "/metrics", headers=basic("prom", "pw-one"), timeout=5).ok

    text = agent.config.read_text()
    agent.config.write_text(text[: text.index('[[api_tokens]]\nname = "look"')])
    admin.write_text("admin-two\n")  # rotated
    users(b"pw-two")
    answer = requests.post(agent.url + "/api/v1/reload", headers=bearer("admin-one"), timeout=20)
    assert answer.status_code == 200, answer.text
    # refused as soon as the reload call has returned
    assert requests.get(who, headers=bearer("viewer-one"), timeout=5).status_code == 401
    assert requests.get(who, headers=bearer("admin-one"), timeout=5).status_code == 401
    assert requests.get(who, headers=bearer("admin-two"), timeout=5).status_code == 200
    scrape = agent.url + "/metrics"
    assert requests.get(scrape, headers=basic("prom", "pw-one"), timeout=5).status_code == 401
    assert requests.get(scrape, headers=basic("prom", "pw-two"), timeout=5).status_code == 200


def test_a_broken_rule_file_on_reload_keeps_the_running_rules(
    textfile_agent: Callable[[], AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    agent = textfile_agent()
    rules = tmp_path / "rules.yml"
    rules.write_text(RULE.replace("thresholds: {critical: 0.5}", "for:\n        thresholds: x"))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in agent.log(), 10, "the refusal in the log")
    assert f"{rules}:" in agent.log(), "the problem names its file:line"
    wait_for(lambda: "dsagent_config_last_reload_successful 0.0" in agent.metrics(), 10, "metric")
    assert agent.proc.poll() is None, "still running"
    write_value(tmp_path / "textfile", 1)
    wait_for(lambda: statuses(sink) == ["firing"], 15, "the old rules still fire")
    rules.write_text(RULE)
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "dsagent_config_last_reload_successful 1.0" in agent.metrics(), 10, "fixed")
