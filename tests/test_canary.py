"""The answer-consistency canary: a changed answer over time, and replicas that disagree."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from agent.config import WorkerConfig
from agent.sim.worker import SimServer
from agent.workers.canary import HOLD, Answer, Board, Canary
from tests.conftest import AgentProcess, wait_for

W = WorkerConfig(name="a", url="http://127.0.0.1:1", model="m", canary_interval=60,
                 canary_history=2)  # fmt: skip


def drift(canary: Canary, now: float) -> list[dict[str, str]]:
    return [dict(s.labels) for s in canary.samples(now) if s.name == "inference_canary_drift"]


def test_a_new_answer_is_a_change_held_then_gone() -> None:
    canary = Canary(W, lambda: "", Board())
    canary.take(Answer("h1", " Paris", 100))
    canary.take(Answer("h1", " Paris", 160))
    assert canary.changes == 0 and drift(canary, 160) == []
    canary.take(Answer("h2", " paris." * 50, 220))
    assert canary.changes == 1
    (got,) = drift(canary, 230)
    assert got["versus"] == "earlier" and got["other"] == " Paris"
    assert len(got["answer"]) == 200, "the first 200 characters"
    assert drift(canary, 220 + HOLD) == [], "held for HOLD seconds, then gone"
    canary.take(Answer("h1", " Paris", 280))
    assert canary.changes == 1, "an answer among the last N is no change"
    canary.take(Answer("h3", "x", 340))
    canary.take(Answer("h2", "y", 400))
    assert canary.changes == 3, "h2 left the last 2: it counts again"


def test_workers_of_one_model_are_compared() -> None:
    board = Board()
    a = Canary(W, lambda: "", board)
    b = Canary(W.model_copy(update={"name": "b"}), lambda: "", board)
    other = Canary(W.model_copy(update={"name": "c", "model": "other"}), lambda: "", board)
    a.take(Answer("h1", " Paris", 1))
    b.take(Answer("h2", " Lyon", 1))
    other.take(Answer("h9", " Rome", 1))
    assert drift(a, 2) == [{"worker": "a", "versus": "b", "answer": " Paris", "other": " Lyon"}]
    assert [d["versus"] for d in drift(b, 2)] == ["a"]
    assert drift(other, 2) == [], "another model is not a peer"


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[list[str]]:
    servers = [SimServer(0, "deepseek-r1", None) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.integration
def test_a_changed_answer_alerts_with_both_answers(
    agent_factory: Callable[..., AgentProcess], sims: list[str]
) -> None:
    workers = "".join(f'[[workers]]\nname = "r{i}"\nurl = "{url}"\nmodel = "deepseek-r1"\n'
                      f'generation_interval = "0s"\ncanary_interval = "1s"\n'
                      for i, url in enumerate(sims))  # fmt: skip
    agent = agent_factory(workers)
    agent.wait_healthy()
    wait_for(lambda: 'inference_canary_answer_changes_total{worker="r1"} 0.0' in agent.metrics(),
             20, "the canary asked")  # fmt: skip
    assert "inference_canary_drift{" not in agent.metrics(), "replicas agree at first"
    requests.post(sims[1] + "/control", json={"answer_salt": 1}, timeout=5)  # r1 requantised
    wait_for(lambda: 'inference_canary_answer_changes_total{worker="r1"} 1.0' in agent.metrics(),
             20, "the change counted")  # fmt: skip

    def alerts() -> list[dict[str, object]]:
        got = requests.get(agent.url + "/api/v1/alerts", timeout=2).json()
        return [a for a in got if a["labels"]["alertname"] == "InferenceAnswerDrift"
                and a["state"] == "firing"]  # fmt: skip

    wait_for(lambda: len(alerts()) == 3, 20, "drift: r1 over time, r0 vs r1, r1 vs r0")
    versus = sorted((a["labels"]["worker"], a["labels"]["versus"]) for a in alerts())  # type: ignore[index]
    assert versus == [("r0", "r1"), ("r1", "earlier"), ("r1", "r0")]
    mine = next(a for a in alerts() if a["labels"]["versus"] == "earlier")  # type: ignore[index]
    before, after = mine["labels"]["other"], mine["labels"]["answer"]  # type: ignore[index]
    assert before != after and before in mine["annotations"]["description"]  # type: ignore[index]
    assert after in mine["annotations"]["description"]  # type: ignore[index]
