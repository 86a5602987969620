"""Shipping into a real Elasticsearch: ECS documents, dead letters, and exactly once through
an outage, kill -9, rename rotation and copytruncate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import AgentProcess, wait_for

pytestmark = pytest.mark.integration
INDEX = "logs-llm.inference-default"


def line(i: int, **extra: Any) -> str:
    record = {
        "timestamp": "2026-11-29T10:00:00.000Z",
        "request_id": f"r{i:06d}",
        "model_version": "deepseek-v3",
        "input_length": 10,
        "output_length": 20,
        "latency_ms": 100.0 + i % 50,
        "gpu_util": 0.8,
        "error_code": None,
        **extra,
    }
    return json.dumps(record) + "\n"


def search(es: Any, index: str, body: dict[str, Any]) -> dict[str, Any]:
    requests.post(f"{es.url}/{index}/_refresh", timeout=60)
    resp = requests.post(f"{es.url}/{index}/_search", json=body, timeout=60)
    assert resp.ok, resp.text
    return dict(resp.json())


def clean(es: Any) -> None:
    requests.delete(f"{es.url}/logs-*", timeout=60)


def config(es_url: str, log: Path, extra: str = "") -> str:
    return (
        f'[elasticsearch]\nhosts = ["{es_url}"]\nbatch_size = 2000\n'
        f'[[logs]]\nname = "vllm"\npaths = ["{log}"]\nformat = "json"\n{extra}'
    )


def test_request_logs_become_ecs_documents_and_bad_ones_dead_letters(
    agent_factory: Callable[..., AgentProcess], elasticsearch: Any, tmp_path: Path
) -> None:
    clean(elasticsearch)
    log = tmp_path / "requests.log"
    log.write_text(
        "".join(line(i) for i in range(50))
        + '{"request_id": "bad", broken\n'
        + line(50, input_length="lots")
    )  # a mapping error: input_length is an integer
    agent = agent_factory(config(elasticsearch.url, log))
    wait_for(lambda: elasticsearch.count(INDEX) >= 51, 60, "51 documents")
    hit = search(elasticsearch, INDEX, {"query": {"term": {"transaction.id": "r000007"}}})
    doc = hit["hits"]["hits"][0]["_source"]
    assert (
        doc["event"]["duration"] == 107_000_000
        and doc["gen_ai"]["response"]["model"] == "deepseek-v3"
    )
    broken = search(elasticsearch, INDEX, {"query": {"term": {"tags": "json_parse_failure"}}})
    assert broken["hits"]["hits"][0]["_source"]["event"]["original"].startswith('{"request_id"')
    dead = (agent.state / "dead-letter" / "vllm.ndjson").read_text().splitlines()
    assert len(dead) == 1 and "document_parsing_exception" in json.loads(dead[0])["reason"]
    refused = json.loads(dead[0])["doc"]  # the document itself, as it was sent
    assert refused["gen_ai"]["usage"]["input_tokens"] == "lots"
    assert refused["transaction"] == {"id": "r000050"}
    wait_for(
        lambda: 'dsagent_log_docs_dead_lettered_total{input="vllm"} 1.0' in agent.metrics(),
        10,
        "the dead-letter counter",
    )
    metrics = agent.metrics()
    assert 'dsagent_log_malformed_lines_total{input="vllm"} 1.0' in metrics
    assert 'inference_requests_per_second{input="vllm"}' in metrics
    assert elasticsearch.count(INDEX) == 51


def test_alert_log_goes_to_its_own_index(
    agent_factory: Callable[..., AgentProcess], elasticsearch: Any, tmp_path: Path
) -> None:
    clean(elasticsearch)
    rules = tmp_path / "r.yml"
    rules.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: LoadSeen\n"
        "        expr: host_load1\n        op: '>='\n        thresholds: {warning: 0}\n"
    )
    log = tmp_path / "requests.log"
    log.write_text("")
    agent_factory(
        config(elasticsearch.url, log, f'[rules]\ndefaults = false\npaths = ["{rules}"]\n')
    )
    index = "logs-dsagent.alerts-default"
    wait_for(
        lambda: (
            requests.head(f"{elasticsearch.url}/{index}", timeout=5).ok
            and elasticsearch.count(index) >= 1
        ),
        60,
        "an alert event",
    )
    src = search(elasticsearch, index, {})["hits"]["hits"][0]["_source"]
    assert src["dsagent"]["alert"]["name"] == "LoadSeen" and src["labels"]["severity"] == "warning"


def test_without_elasticsearch_documents_go_to_a_local_sink(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    log = tmp_path / "requests.log"
    log.write_text("".join(line(i) for i in range(10)))
    agent = agent_factory(f'[[logs]]\nname = "vllm"\npaths = ["{log}"]\n')
    sink = agent.state / "shipped" / "llm.inference.ndjson"
    wait_for(lambda: sink.exists() and len(sink.read_text().splitlines()) == 10, 20, "10 lines")
    assert json.loads(sink.read_text().splitlines()[3])["transaction"]["id"] == "r000003"


class Writer:
    """Writes request lines with O_APPEND, as a logrotate-friendly writer does."""

    def __init__(self, path: Path) -> None:
        self.path, self.n = path, 0

    def write(self, count: int) -> None:
        with self.path.open("a") as f:
            for _ in range(count):
                f.write(line(self.n))
                self.n += 1


def lag_zero(agent: AgentProcess) -> bool:
    return 'dsagent_log_lag_bytes{input="vllm"} 0.0' in agent.metrics()


def test_exactly_once_through_outage_kill_and_both_rotations(
    agent_factory: Callable[..., AgentProcess], elasticsearch: Any, tmp_path: Path
) -> None:
    clean(elasticsearch)
    log, state = tmp_path / "requests.log", tmp_path / "state"
    text = f'[agent]\nstate_dir = "{state}"\n' + config(elasticsearch.url, log)
    writer = Writer(log)
    agent = agent_factory(text)
    writer.write(50_000)
    wait_for(lambda: elasticsearch.count(INDEX) > 0, 60, "shipping to start")

    elasticsearch.stop()  # an outage of 30 s while lines keep coming
    began = time.monotonic()
    writer.write(50_000)
    time.sleep(max(0.0, 30 - (time.monotonic() - began)))
    elasticsearch.start()

    os.rename(log, tmp_path / "requests.log.1")  # logrotate 'create'
    writer.write(40_000)
    os.kill(agent.proc.pid, signal.SIGKILL)  # mid-flight
    agent.proc.wait()
    writer.write(20_000)
    agent = agent_factory(text)

    wait_for(lambda: lag_zero(agent) and elasticsearch.count(INDEX) >= 160_000, 180, "catch-up")
    shutil.copy(log, tmp_path / "requests.log.2")  # logrotate 'copytruncate'
    with log.open("r+") as f:
        f.truncate(0)
    writer.write(40_000)

    assert writer.n == 200_000
    wait_for(lambda: elasticsearch.count(INDEX) >= 200_000, 180, "all 200,000 documents")
    time.sleep(2)
    assert elasticsearch.count(INDEX) == 200_000
    dupes = search(
        elasticsearch,
        INDEX,
        {
            "size": 0,
            "aggs": {"d": {"terms": {"field": "transaction.id", "min_doc_count": 2, "size": 5}}},
        },
    )
    assert dupes["aggregations"]["d"]["buckets"] == [], "no transaction.id twice"


def test_a_node_that_never_answers_is_skipped_within_the_request(
    agent_factory: Callable[..., AgentProcess], elasticsearch: Any, tmp_path: Path
) -> None:
    import socket

    clean(elasticsearch)
    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        log = tmp_path / "requests.log"
        log.write_text("".join(line(i) for i in range(300)))
        hosts = f'["http://127.0.0.1:{silent.getsockname()[1]}", "{elasticsearch.url}"]'
        text = config(elasticsearch.url, log).replace(f'["{elasticsearch.url}"]', hosts)
        agent = agent_factory(text.replace("batch_size = 2000", 'batch_size = 50\ntimeout = "2s"'))
        wait_for(lambda: elasticsearch.count(INDEX) >= 300, 60, "300 documents")
        silent.setblocking(False)
        tried = 0
        while True:
            try:
                silent.accept()[0].close()
                tried += 1
            except BlockingIOError:
                break
        assert tried >= 1, "the silent node was tried"
        metrics = agent.metrics()
        assert 'dsagent_log_docs_failed_total{input="vllm"} 0.0' in metrics, "no bulk failed"
        assert elasticsearch.count(INDEX) == 300
    finally:
        silent.close()


def test_a_cluster_without_a_master_is_reported_as_such_once(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    from tests.conftest import free_port, need
    from tests.es import Node

    need(os.geteuid() == 0, "running Elasticsearch as its own user needs root")
    lonely = Node(free_port(), settings='transport.port: 0\ndiscovery.seed_hosts: ["127.0.0.1:1"]'
                  "\nnode.roles: [data, ingest]\n")  # fmt: skip  # its master never comes
    lonely.start(healthy=False)
    try:
        log = tmp_path / "requests.log"
        log.write_text("".join(line(i) for i in range(10)))
        agent = agent_factory(config(lonely.url, log))
        reason = 'reason="HTTP 503 master_not_discovered_exception"'
        wait_for(lambda: reason in agent.metrics(), 60, "the 503 counted with its ES type")
        assert 'dsagent_backend_up{backend="elasticsearch",kind="elasticsearch"} 0.0' in (
            agent.metrics()
        )
        time.sleep(3)  # several more tries
        said = [x for x in agent.log().splitlines() if "elasticsearch is failing" in x]
        assert len(said) == 1 and "master_not_discovered_exception" in said[0], said
    finally:
        lonely.cleanup()
