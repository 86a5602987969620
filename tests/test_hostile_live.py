"""Findings that were live on a running agent, reproduced on one: each now holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import AgentProcess, Sink, wait_for

pytestmark = pytest.mark.integration

RULES = """groups:
  - name: values
    rules:
      - alert: ValueHigh
        expr: demo_value
        thresholds: {critical: 1}
        annotations: {summary: 'value {{ printf "%d" $value }} on {{ $labels.i }}'}
"""


def textfile_config(tmp: Path, lines: str, extra: str = "") -> str:
    textdir = tmp / "text"
    textdir.mkdir(exist_ok=True)
    (textdir / "demo.prom").write_text(lines)
    (tmp / "rules.yml").write_text(RULES)
    return (f'[textfile]\ndirectory = "{textdir}"\n'
            f'[rules]\ndefaults = false\npaths = ["{tmp / "rules.yml"}"]\n{extra}')  # fmt: skip


def test_an_infinite_value_fires_beside_the_others_and_the_group_lives(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    agent = agent_factory(
        textfile_config(tmp_path, 'demo_value{i="a"} +Inf\ndemo_value{i="b"} 2\n')
    )
    agent.wait_healthy()

    def firing() -> set[str]:
        text = agent.metrics()
        return {i for i in "ab" if f'i="{i}"' in text and 'alertstate="firing"' in text}

    wait_for(lambda: firing() == {"a", "b"}, 15, "both instances firing")
    text = agent.metrics()
    assert 'dsagent_sampler_success{sampler="rules:values"} 1.0' in text
    assert "OverflowError" not in agent.log()


def test_an_empty_token_file_stops_the_start_with_exit_2(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    agent = agent_factory(
        f'[[api_tokens]]\nname = "root"\nrole = "admin"\ntoken_file = "{empty}"\n'
    )
    assert agent.proc.wait(30) == 2
    assert "api_tokens.0.token_file" in agent.log() and "empty" in agent.log()


def test_a_receiver_redirect_is_a_failure_not_a_second_destination(
    agent_factory: Callable[..., AgentProcess], sink: Sink, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    sink.redirect["/hook"] = f"{sink.url}/elsewhere"
    hook = (f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
            f'secret_file = "{secret}"\n')  # fmt: skip
    agent = agent_factory(textfile_config(tmp_path, 'demo_value{i="a"} 5\n', hook))
    agent.wait_healthy()

    def failed() -> float:
        prefix = 'dsagent_notifications_failed_total{receiver="hook#0"} '
        lines = [x for x in agent.metrics().splitlines() if x.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    wait_for(lambda: failed() >= 1, 20, "the 3xx counted as a failed try")
    assert len(sink.on("/hook")) >= 1
    assert sink.on("/elsewhere") == [], "the signed body went nowhere else"
    assert "HTTP 307" in agent.log()
