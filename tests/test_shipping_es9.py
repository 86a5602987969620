"""Shipping into Elasticsearch 9 (the integ-test build on Temurin 25), as into ES 8: the
client's compatibility headers, the feature detection, exactly once, the template's types."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.conftest import AgentProcess, wait_for
from tests.ecs import violations
from tests.test_shipping_es import INDEX, config, line, search


def test_elasticsearch_9_takes_the_same_documents_once(
    agent_factory: Callable[..., AgentProcess], elasticsearch9: Any, tmp_path: Path
) -> None:
    es = elasticsearch9
    nodes = requests.get(f"{es.url}/_nodes/_local", timeout=10).json()["nodes"]
    assert next(iter(nodes.values()))["version"].startswith("9.")
    log = tmp_path / "requests.log"
    log.write_text("".join(line(i) for i in range(2000)))
    agent = agent_factory(config(es.url, log))
    wait_for(lambda: es.count(INDEX) >= 2000, 90, "2,000 documents in ES 9")
    agent.stop()
    again = agent_factory(config(es.url, log))  # a restart replays nothing twice
    with log.open("a") as f:
        f.write("".join(line(i) for i in range(2000, 2500)))
    wait_for(lambda: es.count(INDEX) >= 2500, 60, "500 more")
    assert es.count(INDEX) == 2500
    mapping = requests.get(f"{es.url}/{INDEX}/_mapping", timeout=10).json()
    usage = next(iter(mapping.values()))["mappings"]["properties"]["gen_ai"]["properties"]
    assert usage["usage"]["properties"]["input_tokens"]["type"] == "integer"
    doc = search(es, INDEX, {"size": 1})["hits"]["hits"][0]["_source"]
    assert violations(doc) == []
    up = 'dsagent_backend_up{backend="elasticsearch",kind="elasticsearch"} 1.0'
    # the backends are sampled once a round: the documents can land before the first one
    wait_for(lambda: up in again.metrics(), 5, "the cluster reported up")
