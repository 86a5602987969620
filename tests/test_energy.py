"""Joules and cost per token: GPU energy of a worker's GPUs over the tokens it generated."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from agent.config.settings import CostConfig
from agent.samplers.gpu import energy_by_holder
from agent.sim.worker import SimServer
from agent.store import Sample, sample
from agent.workers.energy import EnergyBook, per_token
from tests.conftest import AgentProcess, wait_for
from tests.test_cli import dsagent


def test_book_spans_the_window_and_refuses_resets_and_changed_gpus() -> None:
    book = EnergyBook()
    for ts, joules in ((100, 1000.0), (101, 1500.0), (160, 31000.0)):
        book.record(ts, {"w": (joules, 2)})
    assert book.spent("w", 100, 160) == (30000.0, 2)
    assert book.spent("w", 100.5, 160) == (29500.0, 2), "the reading at or after the start"
    assert book.spent("other", 100, 160) is None
    book.record(170, {"w": (10.0, 2)})  # the driver reloaded: its counter restarted
    assert book.spent("w", 160, 170) is None
    book.record(180, {"w": (500.0, 3)})  # a third GPU: not one window's worth of the same GPUs
    assert book.spent("w", 170, 180) is None


def test_per_token_by_hand() -> None:
    prices = CostConfig(electricity_per_kwh=0.2, gpu_hour=2.0, currency="EUR")
    got = {(s.name, dict(s.labels)["tokens"]): s.value
           for s in per_token("w", joules=3600.0, gpus=2, seconds=60.0,
                              tokens={"output": 100.0, "all": 400.0}, prices=prices)}  # fmt: skip
    assert got["inference_energy_joules_per_token", "output"] == 36.0
    assert got["inference_energy_joules_per_token", "all"] == 9.0
    # 0.001 kWh x 0.2 + 2 GPUs x 1/60 h x 2.0 = 0.0002 + 0.0666...; per million of 100 tokens
    assert got["inference_cost_per_million_tokens", "output"] == pytest.approx(
        (0.0002 + 2 * 60 / 3600 * 2.0) / 100 * 1e6
    )
    (labelled,) = per_token(
        "w",
        joules=1.0,
        gpus=1,
        seconds=1.0,
        tokens={"output": 1.0},
        prices=CostConfig(),
        pod={"namespace": "llm", "pod": "r1-0"},
    )
    assert dict(labelled.labels) == {"worker": "w", "tokens": "output", "namespace": "llm",
                                     "pod": "r1-0"}, "a worker found as a pod names it"  # fmt: skip
    free = list(per_token("w", joules=3600.0, gpus=2, seconds=60.0, tokens={"output": 0.0},
                          prices=CostConfig()))  # fmt: skip
    assert free == [], "no tokens: no ratio (never a division by zero)"


def test_energy_by_holder_counts_each_gpu_once() -> None:
    samples = [Sample("gpu_energy_joules_total", e, (("gpu", g),)) for g, e in
               (("0", 100.0), ("1", 200.0), ("2", 400.0))]  # fmt: skip
    for gpu, joules in (("3", 800.0), ("4", 1600.0)):  # held by one pod: its labels are on them
        samples.append(sample("gpu_energy_joules_total", joules, gpu=gpu, namespace="llm",
                              pod="r1-0", container="vllm"))  # fmt: skip
    for gpu, pid, worker in (("0", "1", "a"), ("0", "2", "a"), ("1", "3", "a"), ("1", "4", "b")):
        samples.append(sample("gpu_process_memory_bytes", 1, gpu=gpu, pid=pid, worker=worker))
    samples.append(sample("gpu_process_memory_bytes", 1, gpu="2", pid="9", process="other"))
    assert energy_by_holder(samples) == {"a": (300.0, 2), "b": (200.0, 1),
                                         "pod:llm/r1-0": (2400.0, 2)}  # fmt: skip


@pytest.fixture
def sim() -> Iterator[str]:
    server = SimServer(0, "deepseek-r1", None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def value(text: str, prefix: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(prefix))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.integration
def test_joules_and_cost_per_token_end_to_end(
    agent_factory: Callable[..., AgentProcess], sim: str
) -> None:
    # The simulated GPUs' process is the agent itself; its parent, this test, is the worker's pid
    agent = agent_factory(
        f'[gpu]\nsimulate = 2\n[cost]\nelectricity_per_kwh = 0.5\ncurrency = "CNY"\n'
        f'[[workers]]\nname = "w"\nurl = "{sim}"\nmodel = "deepseek-r1"\npids = [{os.getpid()}]\n'
        f'window = "5s"\ngeneration_interval = "0s"\n'
    )
    agent.wait_healthy()
    stop = time.monotonic() + 30
    jpt = 'inference_energy_joules_per_token{tokens="output",worker="w"}'

    def traffic_until_measured() -> bool:
        requests.post(sim + "/v1/completions", json={"prompt": "hi", "max_tokens": 64}, timeout=5)
        return jpt in agent.metrics() or time.monotonic() > stop

    wait_for(traffic_until_measured, 40, "joules per token")
    text = agent.metrics()
    per_output = value(text, jpt)
    per_all = value(text, 'inference_energy_joules_per_token{tokens="all",worker="w"}')
    assert 0 < per_all < per_output, "all tokens include the prompt's: fewer joules each"
    cost = value(
        text, 'inference_cost_per_million_tokens{currency="CNY",tokens="output",worker="w"}'
    )
    assert cost == pytest.approx(per_output * 1e6 / 3.6e6 * 0.5), "electricity only, at 0.5/kWh"
    status = dsagent("status", "--url", agent.url).stdout
    assert "J/token out" in status and "CNY per million out" in status
