"""Log lines are total: any bytes become a document, a text fallback or a dead letter.

Hypothesis throws bytes, JSON of every shape and the seeds that crashed 0.1 at the three
mappers (request, alert, audit); a running agent then gets a poison line between two good
ones and must ship both good ones, dead-letter the bad one, and keep going.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.config.shipping import LogInputConfig
from agent.shipping.documents import Poison, to_doc
from agent.shipping.parse import Event
from tests.conftest import AgentProcess, wait_for
from tests.fuzzing import DATASETS, RECORDS, check_line

SEEDS = [
    b'{"latency_ms":1e999}',
    b'{"timestamp":9223372036854775808}',
    b'{"timestamp":9223372036854775807}',
    b'{"timestamp":-1e300,"latency_ms":-5}',
    b"[" * 1000 + b"]" * 1000,
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    b'{"annotations":"x","labels":5,"status":"200"}',
    b'{"annotations":{"summary":null},"status":true}',
    b'{"gpu_util":NaN,"input_length":Infinity}',
    b'{"input_length":1e308,"output_length":-1e308,"latency_ms":1e308}',
    b"\xff\xfe\x00garbage",
    b'{"request_id":{"nested":[1,2]},"error_code":[1]}',
]


@pytest.mark.parametrize("data", SEEDS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_the_seeds_that_crashed_0_1(data: bytes, dataset: str) -> None:
    check_line((data, dataset))


def test_an_overflowing_number_is_a_dead_letter_with_its_reason() -> None:
    with pytest.raises(Poison, match="out of range"):
        to_doc(Event("1:2:0", "/x", 0, 1, SEEDS[0]), LogInputConfig(name="i", paths=["x"]), "n",
               "llm.inference")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(DATASETS))
@example(b"{}", "dsagent.audit")
def test_any_bytes(data: bytes, dataset: str) -> None:
    check_line((data, dataset))


@settings(max_examples=500, deadline=None)
@given(RECORDS, st.sampled_from(DATASETS))
def test_any_record_of_the_known_keys(data: bytes, dataset: str) -> None:
    check_line((data, dataset))


def shipped(agent: AgentProcess) -> list[dict[str, Any]]:
    path = agent.state / "shipped" / "llm.inference.ndjson"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_poison_line_is_set_aside_and_the_next_lines_ship(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    log = tmp_path / "req.log"
    log.write_text("")
    agent = agent_factory(f'[[logs]]\nname = "vllm"\npaths = ["{log}"]\n')
    agent.wait_healthy()
    with log.open("a") as f:
        f.write('{"request_id": "before", "latency_ms": 10}\n')
        f.write('{"request_id": "poison", "latency_ms": 1e999}\n')
        f.write('{"request_id": "after", "latency_ms": 12}\n')
    wait_for(lambda: len(shipped(agent)) == 2, 15, "the two good lines")
    assert [d["transaction"]["id"] for d in shipped(agent)] == ["before", "after"]
    dead = (agent.state / "dead-letter" / "vllm.ndjson").read_text().splitlines()
    (entry,) = [json.loads(line) for line in dead]
    assert "1e999" in entry["doc"]["event"]["original"] and "out of range" in entry["reason"]
    wait_for(lambda: 'dsagent_log_docs_dead_lettered_total{input="vllm"} 1.0' in agent.metrics(),
             10, "the dead letter counted")  # fmt: skip
    with log.open("a") as f:
        f.write('{"request_id": "later", "latency_ms": 5}\n')
    wait_for(lambda: len(shipped(agent)) == 3, 15, "the input is alive")
    assert 'dsagent_log_lag_bytes{input="vllm"} 0.0' in agent.metrics()
