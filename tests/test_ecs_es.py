"""ECS in a real Elasticsearch: the template's types, on top of ecs@mappings; the Kibana checks
pass on the mapping the cluster built; every shipped document fits ECS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.shipping import template
from tests.conftest import AgentProcess, wait_for
from tests.ecs import violations
from tests.test_dashboards import check_fields, field_types
from tests.test_shipping_es import clean, config, line, search

pytestmark = pytest.mark.integration
# The first of ecs@mappings' dynamic templates; the integ-test zip lacks the stack templates.
ECS_STAND_IN = {
    "template": {
        "mappings": {
            "dynamic_templates": [
                {
                    "ecs_keywords": {
                        "match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": 1024},
                    }
                }
            ]
        }
    }
}
INDICES = ("llm.inference", "dsagent.node", "dsagent.alerts", "dsagent.audit")


def mapping(es: Any, index: str) -> dict[str, str]:
    body = requests.get(f"{es.url}/{index}/_mapping", timeout=30).json()
    return field_types(next(iter(body.values()))["mappings"])


def test_documents_land_with_the_templates_types_and_fit_ecs(
    agent_factory: Callable[..., AgentProcess], elasticsearch: Any, tmp_path: Path
) -> None:
    clean(elasticsearch)
    url = elasticsearch.url
    requests.delete(f"{url}/_index_template/{template.NAME}", timeout=30)
    stand_in = requests.put(f"{url}/_component_template/ecs@mappings", json=ECS_STAND_IN,
                            timeout=30)  # fmt: skip
    assert stand_in.ok, stand_in.text
    try:
        start(agent_factory, url, tmp_path)
        for name in INDICES:
            wait_for(lambda n=name: elasticsearch.count(f"logs-{n}-default") >= 1, 60, name)
        installed = requests.get(f"{url}/_index_template/{template.NAME}", timeout=30).json()
        composed = installed["index_templates"][0]["index_template"]["composed_of"]
        assert composed == ["ecs@mappings", template.COMPONENT]
        check_documents(elasticsearch)
    finally:
        requests.delete(f"{url}/_index_template/{template.NAME}", timeout=30)
        requests.delete(f"{url}/_component_template/ecs@mappings", timeout=30)


def start(agent_factory: Callable[..., AgentProcess], url: str, tmp_path: Path) -> AgentProcess:
    """Run an agent shipping all four kinds: requests, a node log, alerts and the audit log."""
    requests_log, node_log, rules = (tmp_path / n for n in ("req.log", "node.log", "r.yml"))
    record = {"model": "deepseek-v3", "finish_reason": "stop", "response_id": "cmpl-1"}
    requests_log.write_text(line(1, **record) + line(2))
    node_log.write_text("2026-12-02 00:00:02 ERROR boom\nno time here\n")
    rules.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: LoadSeen\n"
        "        expr: host_load1\n        op: '>='\n        thresholds: {warning: 0}\n"
    )
    extra = (f'fields = {{cluster = "bj-1"}}\n[[logs]]\nname = "node"\npaths = ["{node_log}"]\n'
             f'format = "text"\n[rules]\ndefaults = false\npaths = ["{rules}"]\n')  # fmt: skip
    agent = agent_factory(config(url, requests_log, extra))
    agent.wait_healthy()
    requests.get(f"{agent.url}/api/v1/alerts", timeout=5)  # an audited call
    return agent


def check_documents(es: Any) -> None:
    """Assert template types in the real mappings, Kibana's fields, and ECS in every document."""
    nodes = requests.get(f"{es.url}/_nodes/_local/plugins", timeout=30).json()
    wanted = field_types(template.mappings(template.modules(nodes)))
    for name in INDICES:
        index = f"logs-{name}-default"
        real = mapping(es, index)
        for field, kind in real.items():
            if field in wanted:
                assert kind == wanted[field], (index, field, kind)
        for hit in search(es, index, {"size": 100})["hits"]["hits"]:
            assert violations(hit["_source"]) == [], (index, hit["_source"])
    real = mapping(es, "logs-llm.inference-default")
    assert real["gen_ai.usage.input_tokens"] == "integer"  # dynamic mapping would say long
    assert real["cluster"] == "keyword"  # a user's own field, typed by ecs@mappings
    check_fields(real)
    doc = search(es, "logs-llm.inference-default",
                 {"query": {"term": {"gen_ai.response.id": "cmpl-1"}}})["hits"]["hits"]  # fmt: skip
    assert json.dumps(doc[0]["_source"]["gen_ai"]["response"]["finish_reasons"]) == '["stop"]'
