"""The index template: the types of every field dsagent writes, on top of ECS's own mappings."""

from __future__ import annotations

from typing import Any

NAME = "dsagent-logs"
COMPONENT = "dsagent-logs@mappings"
PATTERNS = ["logs-llm.inference-*", "logs-dsagent.*"]
PRIORITY = 600  # above the built-in `logs` template (100) and Fleet's integrations (200)
ECS_COMPONENT = "ecs@mappings"  # Elastic's ECS dynamic templates, where the cluster has them
DATA_STREAMS, ILM = "data-streams", "x-pack-ilm"  # the modules that bring them
# ECS types a module brings, and what stands in without it (the integ-test build has neither)
FALLBACK = {"match_only_text": ("mapper-extras", "text"), "wildcard": ("wildcard", "keyword")}


def _props(**fields: Any) -> dict[str, Any]:
    return {"properties": fields}


KEYWORD, LONG, INTEGER = {"type": "keyword"}, {"type": "long"}, {"type": "integer"}
# Types as ECS gives them, but for `gen_ai.response.finish_reasons`: ECS calls it `nested`,
# yet the values are strings, which a nested field refuses; keyword is what holds them.
GEN_AI = _props(
    usage=_props(input_tokens=INTEGER, output_tokens=INTEGER),
    request=_props(model=KEYWORD, max_tokens=INTEGER),
    response=_props(model=KEYWORD, id=KEYWORD, finish_reasons=KEYWORD),
    operation=_props(name=KEYWORD), system=KEYWORD,
)  # fmt: skip
MAPPINGS = _props(**{
    "@timestamp": {"type": "date"}, "message": {"type": "match_only_text"}, "tags": KEYWORD,
    "host": _props(name=KEYWORD), "service": _props(name=KEYWORD),
    "event": _props(dataset=KEYWORD, module=KEYWORD, outcome=KEYWORD, duration=LONG,
                    kind=KEYWORD, reason=KEYWORD,
                    original={"type": "keyword", "index": False, "doc_values": False}),
    "error": _props(code=KEYWORD), "transaction": _props(id=KEYWORD),
    "log": _props(file=_props(path=KEYWORD), offset=LONG, level=KEYWORD),
    "gen_ai": GEN_AI,
    "user": _props(name=KEYWORD, roles=KEYWORD),
    "http": _props(request=_props(method=KEYWORD), response=_props(status_code=LONG)),
    "url": _props(path={"type": "wildcard"}), "source": _props(ip={"type": "ip"}),
    "labels": {"type": "object", "dynamic": True},
    "dsagent": _props(
        request=_props(model_version=KEYWORD, gpu_util={"type": "float"}),
        alert=_props(name=KEYWORD, state=KEYWORD, previous=KEYWORD, severity=KEYWORD,
                     value={"type": "double"}),
    ),
})  # fmt: skip
ILM_POLICY = {"policy": {"phases": {
    "hot": {"actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}}},
    "delete": {"min_age": "30d", "actions": {"delete": {}}},
}}}  # fmt: skip


def mappings(modules: frozenset[str]) -> dict[str, Any]:
    """Return MAPPINGS with the types this cluster lacks replaced by their stand-ins."""

    def fit(node: Any) -> Any:
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind in FALLBACK and FALLBACK[kind][0] not in modules:
                return {**node, "type": FALLBACK[kind][1]}
            return {key: fit(value) for key, value in node.items()}
        return node

    return dict(fit(MAPPINGS))


def component(modules: frozenset[str]) -> dict[str, Any]:
    """Build dsagent's component template: its mappings, and the lifecycle where there is ILM."""
    template: dict[str, Any] = {"mappings": mappings(modules)}
    if ILM in modules:
        template["settings"] = {"index.lifecycle.name": NAME}
    return {"template": template, "_meta": {"managed_by": "dsagent"}}


def index_template(modules: frozenset[str], ecs: bool) -> dict[str, Any]:
    """Build the composable index template; dsagent's component comes last, so its types win."""
    body: dict[str, Any] = {
        "index_patterns": PATTERNS,
        "priority": PRIORITY,
        "composed_of": [ECS_COMPONENT, COMPONENT] if ecs else [COMPONENT],
        "_meta": {"managed_by": "dsagent"},
    }
    if DATA_STREAMS in modules:
        body["data_stream"] = {}
    return body


def modules(nodes: dict[str, Any]) -> frozenset[str]:
    """Read the modules a node loaded from `GET /_nodes/_local/plugins`."""
    return frozenset(
        str(module.get("name"))
        for node in nodes.get("nodes", {}).values()
        for module in node.get("modules", [])
    )
