"""A hung engine behind a /health that still says 200, for each engine kind's metric names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from agent.sim.worker import SimServer
from agent.workers.checks import Result
from agent.workers.engine_metrics import ENGINES, parse
from agent.workers.hung import HangWatch
from tests.conftest import AgentProcess, wait_for

KINDS = ["vllm", "vllm-v0", "sglang", "tgi", "llamacpp"]


def snap(waiting: float, done: float, ts: float, engine: str = "vllm") -> object:
    e = ENGINES[engine]
    return parse(f"{e.waiting[0]} {waiting}\n{e.tokens_out[0]} {done}\n", ts)


def test_frozen_only_while_requests_wait_and_no_token_comes() -> None:
    watch = HangWatch(ENGINES["vllm"], hung_after=60)
    assert not watch.frozen(snap(0, 100, 0), 0)  # type: ignore[arg-type]
    assert not watch.frozen(snap(3, 100, 30), 30), "waiting, but only since 0 s ago"  # type: ignore[arg-type]
    assert not watch.frozen(snap(3, 100, 59), 59)  # type: ignore[arg-type]
    assert watch.frozen(snap(3, 100, 60), 60), "60 s with a queue and no token"  # type: ignore[arg-type]
    assert not watch.frozen(snap(3, 101, 61), 61), "a token came: the clock restarts"  # type: ignore[arg-type]
    assert not watch.frozen(snap(0, 101, 200), 200), "an empty queue is idle, not hung"  # type: ignore[arg-type]
    assert not watch.frozen(parse("other 1\n", 300), 300), "an engine that does not say"


def test_reasons() -> None:
    timeout = Result(False, 0, "timed out", {}, reason="timeout")
    refused = Result(False, 500, "error", {}, reason="http_status")
    assert HangWatch.reasons(timeout, False) == {"generation_timeout"}
    assert HangWatch.reasons(refused, False) == set(), "an error answer is not a hang"
    assert HangWatch.reasons(None, True) == {"engine_frozen"}


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, SimServer]]:
    server = SimServer(0, "deepseek-r1", tmp_path / "requests.log", engine=request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield request.param, server
    server.sim.behaviour.mode = "ok"
    server.shutdown()
    server.server_close()


def hung(agent: AgentProcess, reason: str) -> bool:
    return f'worker_engine_hung{{reason="{reason}",worker="w"}} 1.0' in agent.metrics()


@pytest.mark.integration
def test_hung_engine_is_not_ready_and_alerts(
    agent_factory: Callable[..., AgentProcess], engine: tuple[str, SimServer]
) -> None:
    kind, server = engine
    url = f"http://127.0.0.1:{server.server_address[1]}"
    agent = agent_factory(
        f'[[workers]]\nname = "w"\nurl = "{url}"\nengine = "{kind.removesuffix("-v0")}"\n'
        f'model = "deepseek-r1"\ngeneration_interval = "1s"\ngeneration_timeout = "500ms"\n'
        f'hung_after = "2s"\n'
    )
    agent.wait_healthy()
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 200, 20,
             "ready first")  # fmt: skip
    for _ in range(3):  # traffic, so the token counters exist and move
        requests.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 8}, timeout=5)
    assert requests.get(url + "/health", timeout=2).status_code == 200
    requests.post(url + "/control", json={"mode": "engine_hung"}, timeout=5)
    began = time.monotonic()
    wait_for(lambda: hung(agent, "generation_timeout"), 10, "the generation probe's timeout")
    assert time.monotonic() - began <= 2 * 1.0 + 0.5 + 1.0, "within 2 probe intervals (+ a round)"
    assert requests.get(url + "/health", timeout=2).status_code == 200, "still 'healthy'"
    assert requests.get(agent.url + "/readyz", timeout=2).status_code == 503
    assert 'worker_ready{worker="w"} 0.0' in agent.metrics()
    wait_for(lambda: hung(agent, "engine_frozen"), 10, "the standing queue")

    def alerting() -> bool:
        alerts = requests.get(agent.url + "/api/v1/alerts", timeout=2).json()
        return any(a["labels"]["alertname"] == "InferenceEngineHung" and a["state"] == "firing"
                   for a in alerts)  # fmt: skip

    wait_for(alerting, 15, "InferenceEngineHung firing")
    requests.post(url + "/control", json={"mode": "ok"}, timeout=5)
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 200, 15,
             "ready again once completions answer")  # fmt: skip
