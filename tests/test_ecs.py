"""Shipped documents speak ECS: every field inside an ECS field set exists there, typed alike."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.config.shipping import LogInputConfig
from agent.shipping.documents import to_doc
from agent.shipping.parse import Event
from tests.ecs import violations

NAMES = st.text(min_size=1, max_size=12)
COUNTS = st.one_of(st.none(), st.integers(0, 2**31 - 1), st.integers(0, 10**6).map(float))
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": st.one_of(st.floats(0, 4e9), st.just("2026-12-02T00:00:00Z")),
        "request_id": st.one_of(NAMES, st.integers()),
        "model_version": NAMES, "model": NAMES, "input_length": COUNTS, "output_length": COUNTS,
        "prompt_tokens": COUNTS, "completion_tokens": COUNTS, "max_tokens": COUNTS,
        "latency_ms": st.floats(0, 1e6), "gpu_util": st.floats(0, 1),
        "error_code": st.one_of(st.none(), NAMES, st.integers()),
        "finish_reason": NAMES, "finish_reasons": st.lists(NAMES, max_size=3),
        "response_id": NAMES, "operation": st.sampled_from(["chat", "text_completion"]),
        "provider": NAMES,
    },
)  # fmt: skip


def doc_of(line: str, dataset: str, fmt: str = "json") -> dict[str, Any]:
    cfg = LogInputConfig(name="in", paths=["x"], format=fmt)  # type: ignore[arg-type]
    event = Event("1:2:0", "/var/log/x.log", 0, len(line), line.encode())
    return to_doc(event, cfg, "gpu-01", dataset)[0]


@given(RECORDS)
def test_any_request_record_becomes_ecs(record: dict[str, Any]) -> None:
    assert violations(doc_of(json.dumps(record), "llm.inference")) == []


def test_every_input_kind_becomes_ecs() -> None:
    alert = {
        "@timestamp": "2026-12-02T00:00:00Z",
        "alertname": "GpuHot",
        "state": "firing",
        "previous": "pending",
        "severity": "critical",
        "value": 95.0,
        "labels": {"gpu": "0", "severity": "critical"},
        "annotations": {"summary": "hot"},
    }
    audit = {"@timestamp": "2026-12-02T00:00:00Z", "who": "ops", "role": "admin",
             "method": "POST", "path": "/api/v1/silences", "status": 201,
             "remote": "127.0.0.1", "reason": None}  # fmt: skip
    docs = [
        doc_of(json.dumps(alert), "dsagent.alerts"),
        doc_of(json.dumps(audit), "dsagent.audit"),
        doc_of("2026-12-02 00:00:02 ERROR boom", "dsagent.node", fmt="text"),
        doc_of("{not json", "llm.inference"),
    ]
    for doc in docs:
        assert violations(doc) == [], doc
    assert docs[2]["log"]["level"] == "error"


def test_the_check_catches_a_field_ecs_lacks_or_types_otherwise() -> None:
    assert violations({"gen_ai": {"usage": {"input_tokens": "many"}}}) != []
    assert violations({"event": {"duration_ms": 3}}) == ["event.duration_ms: not in ECS"]
    assert violations({"log": {"offset": 3}, "dsagent": {"anything": 1}}) == []
