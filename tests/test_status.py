"""`dsagent status`: fixed data to a golden screen, and a real agent with GPUs and a worker."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from agent.status.view import RESET, render
from tests.conftest import FIXTURES, AgentProcess, free_port, wait_for
from tests.test_cli import dsagent

DATA = FIXTURES / "status" / "node.json"
GOLDEN = FIXTURES / "status" / "node.txt"


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ")
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_fixed_data_renders_the_golden_screen(utc: None) -> None:
    screen = render(json.loads(DATA.read_text()))
    assert screen == GOLDEN.read_text(encoding="utf-8")
    assert max(len(line) for line in screen.splitlines()) <= 80, "fits 80 columns"
    for needle in ("LOST", "[silenced]", "samplers failing: netprobe", "worst disk I/O wait 18ms"):
        assert needle in screen


def test_colour_and_plain_ascii(utc: None) -> None:
    data = json.loads(DATA.read_text())
    coloured = render(data, color=True)
    assert "\x1b[31m" in coloured and RESET in coloured, "critical and LOST in red"
    plain = render(data, ascii_only=True)
    assert plain.isascii() and "\x1b[" not in plain
    visible = [line.replace(RESET, "") for line in coloured.splitlines()]
    assert all(len(_strip(line)) <= 80 for line in visible)


def _strip(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)


def test_a_dead_agent_is_one_line_and_exit_1() -> None:
    out = dsagent("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "no agent answers" in out.stderr


@pytest.mark.integration
def test_a_real_agent_with_gpus_and_a_worker(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    from agent.sim.worker import SimServer

    sim = SimServer(0, "deepseek-v3", None)
    import threading

    threading.Thread(target=sim.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{sim.server_address[1]}"
    try:
        agent = agent_factory(
            f'[gpu]\nsimulate = 2\n[[workers]]\nname = "sim-0"\nurl = "{url}"\n'
            'model = "deepseek-v3"\ngeneration_interval = "1s"\n'
        )
        agent.wait_healthy()
        wait_for(lambda: 'worker_ready{worker="sim-0"} 1.0' in agent.metrics(), 20, "ready")
        out = dsagent("status", "--url", agent.url)
        assert out.returncode == 0, out.stderr
        screen = out.stdout
        assert "H100 80GB HBM3" in screen and "sim-0" in screen and "ready" in screen
        assert len([line for line in screen.splitlines() if "H100" in line]) == 2
        assert max(len(line) for line in screen.splitlines()) <= 80
        data = json.loads(dsagent("status", "--url", agent.url, "--json").stdout)
        assert {s["name"] for s in data["series"]} >= {"gpu_up", "worker_up"}
    finally:
        sim.shutdown()


@pytest.mark.integration
def test_history_needs_a_viewer_token_once_tokens_exist(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    token = tmp_path / "viewer"
    token.write_text("look-only\n")
    agent = agent_factory(f'[[api_tokens]]\nname = "v"\nrole = "viewer"\ntoken_file = "{token}"\n')
    agent.wait_healthy()
    wait_for(lambda: "dsagent_sampler_success{" in agent.metrics(), 10, "a first round")
    series = agent.url + "/api/v1/series?match=dsagent_sampler_success&range=1m"
    assert requests.get(series, timeout=5).status_code == 401
    answer = requests.get(series, headers={"Authorization": "Bearer look-only"}, timeout=5)
    assert answer.ok and answer.json()["series"]
    assert dsagent("status", "--url", agent.url).returncode == 1
    assert dsagent("status", "--url", agent.url, "--token-file", str(token)).returncode == 0
