"""The dashboards, checked offline: Kibana objects resolve and use mapped fields; Grafana
queries only metrics the agent exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agent.shipping.template import MAPPINGS
from tests.conftest import ROOT

KIBANA = ROOT / "dashboards" / "kibana" / "dsagent.ndjson"
GRAFANA = ROOT / "dashboards" / "grafana" / "dsagent.json"
NESTED = ("visState", "panelsJSON", "optionsJSON", "uiStateJSON", "searchSourceJSON")
NUMERIC = {"long", "integer", "float", "double"}
WANTS = {
    "date_histogram": {"date"},
    "percentiles": NUMERIC,
    "sum": NUMERIC,
    "avg": NUMERIC,
    "terms": {"keyword"},
}


def objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in KIBANA.read_text().splitlines()]


def field_types(props: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for name, spec in props.get("properties", {}).items():
        if "properties" in spec:
            out.update(field_types(spec, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec.get("type", "object")
    return out


def nested(obj: dict[str, Any]) -> dict[str, Any]:
    attrs = dict(obj["attributes"])
    for key in NESTED:
        if key in attrs:
            attrs[key] = json.loads(attrs[key])
    meta = attrs.get("kibanaSavedObjectMeta", {})
    if "searchSourceJSON" in meta:
        attrs["search"] = json.loads(meta["searchSourceJSON"])
    return attrs


def test_every_line_and_nested_string_parses() -> None:
    for obj in objects():
        assert {"type", "id", "attributes", "references"} <= obj.keys()
        nested(obj)


def test_every_reference_resolves() -> None:
    ids = {(o["type"], o["id"]) for o in objects()}
    for obj in objects():
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in ids, ref
        attrs = nested(obj)
        names = {r["name"] for r in obj["references"]}
        for panel in attrs.get("panelsJSON", []):
            assert panel["panelRefName"] in names
        if "indexRefName" in attrs.get("search", {}):
            assert attrs["search"]["indexRefName"] in names


def test_the_two_dashboards_have_what_the_issue_lists() -> None:
    titles = {o["attributes"]["title"] for o in objects()}
    assert {"dsagent: inference", "dsagent: alerts"} <= titles
    views = {o["attributes"]["title"] for o in objects() if o["type"] == "index-pattern"}
    assert {"logs-llm.inference-*", "logs-dsagent.alerts-*"} <= views


def test_every_field_a_panel_uses_is_mapped_with_a_fitting_type() -> None:
    check_fields(field_types(MAPPINGS))


def check_fields(types: dict[str, str]) -> None:
    """Assert every field a Kibana object uses is in `types` (field -> type) with a fitting type."""
    for obj in objects():
        attrs = nested(obj)
        for field in json.loads(attrs.get("fieldFormatMap", "{}")):
            assert types.get(field) in NUMERIC, (obj["id"], field, types.get(field))
        for agg in attrs.get("visState", {}).get("aggs", []):
            field = agg["params"].get("field")
            if field:
                assert types.get(field) in WANTS[agg["type"]], (obj["id"], field, types.get(field))
        for column in attrs.get("columns", []):
            assert column in types, (obj["id"], column)
        for field, _ in attrs.get("sort", []):
            assert types.get(field) in NUMERIC | {"date"}, field


def exported_metrics() -> set[str]:
    from agent.alerting.engine import METRICS as ALERTS
    from agent.backends import METRICS as BACKENDS
    from agent.daemon import RELOAD_METRICS
    from agent.jobs import METRICS as RUNNER
    from agent.notify.notifier import METRICS as NOTIFY
    from agent.samplers import disk, host, netprobe, network
    from agent.samplers.gpu import GpuSampler
    from agent.shipping.job import METRICS as SHIPPING
    from agent.workers import sampler as worker

    names: set[str] = set()
    for table in (
        ALERTS,
        NOTIFY,
        RUNNER,
        disk.METRICS,
        GpuSampler.metrics,
        host.METRICS,
        netprobe.METRICS,
        network.METRICS,
        worker.METRICS,
        SHIPPING,
        RELOAD_METRICS,
        BACKENDS,
    ):
        names |= set(table)
    return names | {"dsagent_build_info"}


def test_grafana_queries_only_metrics_the_agent_exports() -> None:
    dash = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    used = set()
    for text in [*exprs, dash["templating"]["list"][1]["query"]]:
        expr = re.sub(r"by \([^)]*\)", "", text)  # label lists are not metrics
        used |= {
            m
            for m in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{|\[|\)|$)", expr)
            if m not in {"by", "count", "increase", "label_values", "instance"}
        }
    missing = used - exported_metrics()
    assert not missing, missing
    titles = " ".join(p["title"] for p in dash["panels"])
    for word in (
        "GPU utilization",
        "temperature",
        "power",
        "XID",
        "Disk I/O wait",
        "Packet loss",
        "Latency",
        "Queue",
        "KV cache",
        "alerts",
        "Energy per token",
        "Cost per million tokens",
    ):
        assert word.lower() in titles.lower(), word


@pytest.mark.parametrize("path", [KIBANA, GRAFANA])
def test_files_exist(path: Any) -> None:
    assert path.stat().st_size > 1000
