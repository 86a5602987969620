"""Where documents go: Elasticsearch's _bulk API, or a local NDJSON file; and the dead letters."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from agent.config.shipping import ElasticsearchConfig
from agent.files import JsonLinesLog

log = logging.getLogger(__name__)

Outcome = Literal["ok", "retry"] | tuple[Literal["dead"], str]
Doc = tuple[str, dict[str, Any]]  # (_id, source)
TEMPLATE_PATTERNS = ["logs-llm.inference-*", "logs-dsagent.*"]


def _props(**fields: Any) -> dict[str, Any]:
    return {"properties": fields}


KEYWORD, LONG = {"type": "keyword"}, {"type": "long"}
MAPPINGS = _props(**{
    "@timestamp": {"type": "date"}, "message": {"type": "text"}, "tags": KEYWORD,
    "host": _props(name=KEYWORD), "service": _props(name=KEYWORD),
    "event": _props(dataset=KEYWORD, module=KEYWORD, outcome=KEYWORD, duration=LONG,
                    original={"type": "keyword", "index": False, "doc_values": False}),
    "error": _props(code=KEYWORD), "transaction": _props(id=KEYWORD),
    "log": _props(file=_props(path=KEYWORD), offset=LONG),
    "llm": _props(model_version=KEYWORD, input_length=LONG, output_length=LONG,
                  gpu_util={"type": "float"}),
    "labels": {"type": "object", "dynamic": True},
    "dsagent": _props(alert=_props(name=KEYWORD, state=KEYWORD, previous=KEYWORD,
                                   severity=KEYWORD, value={"type": "double"})),
})  # fmt: skip
ILM_POLICY = {"policy": {"phases": {
    "hot": {"actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}}},
    "delete": {"min_age": "30d", "actions": {"delete": {}}},
}}}  # fmt: skip


def index_template(data_streams: bool, ilm: bool) -> dict[str, Any]:
    """Build the composable index template (priority above Elastic's own 500 for logs-*-*)."""
    template: dict[str, Any] = {"mappings": MAPPINGS}
    if ilm:
        template["settings"] = {"index.lifecycle.name": "dsagent-logs"}
    body: dict[str, Any] = {"index_patterns": TEMPLATE_PATTERNS, "priority": 600,
                            "template": template, "_meta": {"managed_by": "dsagent"}}  # fmt: skip
    if data_streams:
        body["data_stream"] = {}
    return body


class ElasticsearchSink:
    """Bulk-creates documents; 201 and 409 are delivered, 400s are dead, the rest retried."""

    def __init__(self, cfg: ElasticsearchConfig) -> None:
        from elasticsearch import Elasticsearch

        auth: dict[str, Any] = {}
        if cfg.api_key_file is not None:
            auth["api_key"] = cfg.api_key_file.read_text().strip()
        elif cfg.username is not None and cfg.password_file is not None:
            auth["basic_auth"] = (cfg.username, cfg.password_file.read_text().strip())
        if not cfg.verify_certs:
            log.warning("elasticsearch: certificate verification is OFF")
        if cfg.ca_certs is not None:
            auth["ca_certs"] = str(cfg.ca_certs)
        self.es = Elasticsearch(cfg.hosts, verify_certs=cfg.verify_certs,
                                request_timeout=cfg.timeout, max_retries=0, **auth)  # fmt: skip
        self.namespace = cfg.namespace
        self.ready = False

    def index(self, dataset: str) -> str:
        """Return the data stream (or index) of a dataset."""
        return f"logs-{dataset}-{self.namespace}"

    def setup(self) -> bool:
        """Install the template (and an ILM policy) once the cluster answers; feature-detect."""
        from elasticsearch import ApiError, TransportError

        try:
            data_streams = self._supported("GET", "/_data_stream")
            ilm = self._supported("GET", "/_ilm/status")
            if ilm:
                self.es.perform_request("PUT", "/_ilm/policy/dsagent-logs", headers=_JSON,
                                        body=ILM_POLICY)  # fmt: skip
            body = index_template(data_streams, ilm)
            self.es.perform_request(
                "PUT", "/_index_template/dsagent-logs", headers=_JSON, body=body
            )
        except (ApiError, TransportError) as exc:
            log.warning("elasticsearch not ready (%s); will retry", exc)
            return False
        if not data_streams:
            log.info("elasticsearch has no data streams: writing plain indices")
        elif not ilm:
            log.info("elasticsearch has no ILM: data streams without a lifecycle policy")
        self.ready = True
        return True

    def _supported(self, method: str, path: str) -> bool:
        from elasticsearch import ApiError

        try:
            self.es.perform_request(method, path, headers={"accept": "application/json"})
            return True
        except ApiError as exc:
            return exc.meta.status not in (400, 404, 405)

    def ship(self, index: str, docs: list[Doc]) -> list[Outcome]:
        """Send one bulk request; return each document's outcome."""
        from elasticsearch import ApiError, TransportError

        if not self.ready and not self.setup():
            return ["retry"] * len(docs)
        # One NDJSON body built here: the client's per-item serialisation was a third of the CPU.
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        head = '{"create":{"_index":' + dumps(index) + ',"_id":"'
        body = "".join(head + doc_id + '"}}\n' + dumps(source) + "\n" for doc_id, source in docs)
        try:
            resp = self.es.bulk(body=body)  # type: ignore[arg-type]  # NDJSON text passes through as is
        except (ApiError, TransportError) as exc:
            log.debug("bulk failed: %s", exc)
            return ["retry"] * len(docs)
        return [_outcome(item["create"]) for item in resp["items"]]


_JSON = {"accept": "application/json", "content-type": "application/json"}


def _outcome(item: dict[str, Any]) -> Outcome:
    status = int(item.get("status", 500))
    if status in (200, 201, 409):  # 409: created before a crash, now replayed
        return "ok"
    if status == 429 or status >= 500:
        return "retry"
    error = item.get("error", {})
    return ("dead", f"{status} {error.get('type', '')}: {error.get('reason', '')}".strip())


class FileSink:
    """No Elasticsearch configured: documents go to rotating NDJSON files in the state dir."""

    def __init__(self, directory: Path, max_bytes: int = 64 << 20, keep: int = 5) -> None:
        self.directory, self.max_bytes, self.keep = directory, max_bytes, keep
        self._logs: dict[str, JsonLinesLog] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def index(self, dataset: str) -> str:
        """Return the file name of a dataset."""
        return f"{dataset}.ndjson"

    def ship(self, index: str, docs: list[Doc]) -> list[Outcome]:
        """Append and fsync; rotate past max_bytes."""
        log = self._logs.get(index)
        if log is None:
            log = self._logs[index] = JsonLinesLog(
                self.directory / index, self.max_bytes, self.keep
            )
        log.append({"_id": doc_id, **source} for doc_id, source in docs)
        return ["ok"] * len(docs)


class DeadLetters:
    """Documents the cluster refused for their content, with the reason: never silently dropped."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20) -> None:
        self.path = path
        self._log = JsonLinesLog(path, max_bytes, keep=5)

    def write(self, index: str, doc_id: str, source: dict[str, Any], reason: str) -> None:
        """Append one refused document."""
        entry = {"at": time.time(), "index": index, "_id": doc_id, "reason": reason, "doc": source}
        self._log.append([entry])
