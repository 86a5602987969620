"""`dsagent rules check|test|export`, promtool's agreement, and rules in the running agent."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, AgentProcess, promtool, wait_for
from tests.test_cli import dsagent

DEFAULT_TESTS = ROOT / "tests" / "rules" / "default.test.yml"


def test_check_lists_every_problem_and_exits_2() -> None:
    out = dsagent("rules", "check", str(FIXTURES / "rules" / "bad.yml"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) >= 9 and all(re.match(r".+bad\.yml:\d+: ", line) for line in lines)


def test_check_ok_and_the_packaged_defaults() -> None:
    out = dsagent("rules", "check", str(FIXTURES / "rules" / "good.yml"))
    assert out.returncode == 0 and out.stdout.startswith("rules OK: 1 rules in 1 groups")
    defaults = dsagent("rules", "check")
    assert defaults.returncode == 0, defaults.stderr
    assert "44 rules in 7 groups" in defaults.stdout


def test_default_rules_pass_their_unit_tests() -> None:
    out = dsagent("rules", "test", str(DEFAULT_TESTS))
    assert out.returncode == 0, out.stdout
    assert "SUCCESS" in out.stdout


def test_a_failing_case_prints_a_diff_and_exits_1(tmp_path: Path) -> None:
    text = DEFAULT_TESTS.read_text().replace(
        "../../rules/default.yml", str(ROOT / "rules" / "default.yml")
    )
    text = text.replace('summary: "GPU 1 memory 88% used"', 'summary: "GPU 1 memory 99% used"')
    broken = tmp_path / "broken.test.yml"
    broken.write_text(text)
    out = dsagent("rules", "test", str(broken))
    assert out.returncode == 1
    assert "FAILED" in out.stdout and "GpuMemoryHigh at 5m" in out.stdout
    assert "99% used" in out.stdout and "88% used" in out.stdout  # expected vs got


@pytest.mark.integration
def test_promtool_accepts_the_export_and_agrees_with_our_engine(tmp_path: Path) -> None:
    exported = tmp_path / "exported.yml"
    out = dsagent("rules", "export", "--format", "prometheus")
    assert out.returncode == 0
    exported.write_text(out.stdout)
    check = promtool("check", "rules", str(exported))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 53 rules found" in check.stdout
    # The very test cases our engine passes, run by promtool on the exported rules.
    tests = tmp_path / "exported.test.yml"
    tests.write_text(DEFAULT_TESTS.read_text().replace("../../rules/default.yml", str(exported)))
    run = promtool("test", "rules", str(tests), timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


RULE = """groups:
  - name: demo
    interval: 1s
    rules:
      - alert: LoadSeen
        expr: host_load1
        op: ">="
        thresholds: {warning: 0}
        for: 1h
"""


def for_state(agent: AgentProcess) -> float | None:
    for line in agent.metrics().splitlines():
        if line.startswith('ALERTS_FOR_STATE{alertname="LoadSeen"'):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_agent_serves_alerts_keeps_rules_on_bad_reload_and_resumes_after_restart(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    rules = tmp_path / "demo.yml"
    rules.write_text(RULE)
    config = f'[rules]\ndefaults = false\npaths = ["{rules}"]\n'
    agent = agent_factory(config)
    wait_for(lambda: for_state(agent) is not None, 20, "the alert to go pending")
    assert (
        'ALERTS{alertname="LoadSeen",alertstate="pending",severity="warning"} 1.0'
        in agent.metrics()
    )
    active_at = for_state(agent)

    rules.write_text(RULE.replace("host_load1", "rate(host_load1)"))
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration and rules" in agent.log(), 10, "refusal")
    assert f"{rules}:6: LoadSeen: bad expression" in agent.log()
    time.sleep(1.5)
    assert for_state(agent) == active_at, "the old rule set still runs"

    rules.write_text(RULE)
    time.sleep(3)  # pending ~6 s in all before the stop
    assert agent.stop() == 0, "SIGTERM: exit 0 with the alert state flushed"
    assert (agent.state / "alerts.json").exists()
    restarted_at = time.time()
    again = agent_factory(f'[agent]\nstate_dir = "{agent.state}"\n' + config)
    wait_for(lambda: for_state(again) is not None, 20, "the restored alert")
    assert "restored 1 alert instance(s)" in again.log()
    resumed = for_state(again)
    assert resumed is not None and active_at is not None
    # resumed, shifted by the downtime: it started well before the restart, not at it
    assert resumed < restarted_at - 3
    assert resumed > active_at


def test_bad_rules_stop_run_and_check_config_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    bad = FIXTURES / "rules" / "bad.yml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}"\n[rules]\npaths = ["{bad}"]\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
    )
    check = dsagent("check-config", "--config", str(config))
    assert check.returncode == 2
    assert f"{bad}:6: BadExpr: bad expression" in check.stderr
    run = dsagent("run", "--config", str(config))
    assert run.returncode == 2
    assert f"{bad}:9: UnknownFunc" in run.stderr and "Traceback" not in run.stderr
