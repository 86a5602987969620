"""Where documents go: Elasticsearch's _bulk API, or a local NDJSON file; and the dead letters."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from agent.backends import BACKENDS
from agent.config.shipping import ElasticsearchConfig
from agent.files import JsonLinesLog
from agent.secrets import SECRETS
from agent.shipping import template
from agent.shipping.documents import dumps

log = logging.getLogger(__name__)

Outcome = Literal["ok", "retry"] | tuple[Literal["dead"], str]
Doc = tuple[str, bytes]  # (_id, the source as JSON): a batch holds bytes, not dicts
BACKEND = "elasticsearch"
STALL_ALLOWED = 180.0  # seconds without a successful bulk before LogShippingStalled may fire


def credentials(cfg: ElasticsearchConfig) -> tuple[str, str]:
    """Return the API key and the password as their files hold them now ("" if none)."""

    def read(path: Path | None) -> str:
        return path.read_text().strip() if path is not None else ""

    return read(cfg.api_key_file), read(cfg.password_file if cfg.username is not None else None)


class ElasticsearchSink:
    """Bulk-creates documents; 201 and 409 are delivered, 400s are dead, the rest retried."""

    def __init__(self, cfg: ElasticsearchConfig) -> None:
        from elasticsearch import Elasticsearch, OrjsonSerializer

        auth: dict[str, Any] = {}
        api_key, password = credentials(cfg)
        SECRETS.set("elasticsearch", (api_key, password))
        if api_key:
            auth["api_key"] = api_key
        elif cfg.username is not None and password:
            auth["basic_auth"] = (cfg.username, password)
        if not cfg.verify_certs:
            log.warning("elasticsearch: certificate verification is OFF")
        if cfg.ca_certs is not None:
            auth["ca_certs"] = str(cfg.ca_certs)
        # A node that does not answer within the timeout is marked dead and the same request
        # goes on to the next host; a replayed bulk is harmless (create with fixed ids: a 409).
        self.es = Elasticsearch(cfg.hosts, verify_certs=cfg.verify_certs,
                                request_timeout=cfg.timeout, max_retries=len(cfg.hosts) - 1,
                                retry_on_timeout=True, serializer=OrjsonSerializer(),
                                **auth)  # fmt: skip
        self.namespace = cfg.namespace
        self.ready = False
        # How long ES itself may wait for a master or a shard: it answers 503 with the reason
        # before the request's own deadline cuts it off without one.
        self.wait = f"{max(1, int(cfg.timeout / 2))}s"
        BACKENDS.declare(BACKEND, "elasticsearch", STALL_ALLOWED)

    def index(self, dataset: str) -> str:
        """Return the data stream (or index) of a dataset."""
        return f"logs-{dataset}-{self.namespace}"

    def setup(self) -> bool:
        """Install the templates (and an ILM policy) once the cluster answers; feature-detect."""
        from elasticsearch import ApiError, TransportError

        try:
            self._install()
        except ApiError as exc:
            if exc.meta.status in (401, 403):
                log.warning("elasticsearch: no privilege to install the index template (%s %s); "
                            "documents take the cluster's own mappings", exc.meta.status,
                            _error_type(exc))  # fmt: skip
            elif exc.meta.status == 400:  # the cluster refuses the template: ship all the same
                log.error("elasticsearch refused the index template (%s); documents take the "
                          "cluster's own mappings", exc)  # fmt: skip
            else:
                BACKENDS.failed(BACKEND, _reason(exc), f"setting up: {exc}")
                return False
        except TransportError as exc:
            BACKENDS.failed(BACKEND, _reason(exc), f"setting up: {exc}")
            return False
        self.ready = True
        return True

    def _install(self) -> None:
        """Detect modules and ecs@mappings with calls every ES 8 and 9 answers (no 405s)."""
        nodes = self._get("/_nodes/_local/plugins?filter_path=nodes.*.modules.name")
        modules = template.modules(nodes or {})
        path = f"/_component_template/{template.ECS_COMPONENT}?master_timeout={self.wait}"
        ecs = self._get(path) is not None
        if template.ILM in modules:
            self._put(f"/_ilm/policy/{template.NAME}", template.ILM_POLICY)
        self._put(f"/_component_template/{template.COMPONENT}", template.component(modules))
        self._put(f"/_index_template/{template.NAME}", template.index_template(modules, ecs))
        log.info("elasticsearch: index template installed (data streams: %s, ILM: %s, "
                 "ecs@mappings: %s)", template.DATA_STREAMS in modules, template.ILM in modules,
                 ecs)  # fmt: skip

    def _get(self, path: str) -> Any:
        """GET a path; None for a 404 (which, unlike a 405, never marks the node dead)."""
        from elasticsearch import NotFoundError

        try:
            return self.es.perform_request("GET", path, headers=_ACCEPT).body
        except NotFoundError:
            return None

    def _put(self, path: str, body: dict[str, Any]) -> None:
        path += f"?master_timeout={self.wait}"
        self.es.perform_request("PUT", path, headers=_JSON, body=body)

    def ship(self, index: str, docs: list[Doc]) -> list[Outcome]:
        """Send one bulk request; return each document's outcome."""
        from elasticsearch import ApiError, TransportError

        if not self.ready and not self.setup():
            return ["retry"] * len(docs)
        # One NDJSON body built here: the client's per-item serialisation was a third of the CPU.
        head = b'{"create":{"_index":' + dumps(index) + b',"_id":"'
        body = b"".join(head + doc_id.encode() + b'"}}\n' + source + b"\n"
                        for doc_id, source in docs)  # fmt: skip
        try:
            resp = self.es.bulk(body=body, timeout=self.wait,  # type: ignore[arg-type]  # NDJSON as is
                                filter_path=_ANSWER)  # fmt: skip
        except (ApiError, TransportError) as exc:
            BACKENDS.failed(BACKEND, _reason(exc), str(exc)[:300])
            return ["retry"] * len(docs)
        if resp.get("errors") is False:  # every item created: no need to read them one by one
            BACKENDS.ok(BACKEND)
            return ["ok"] * len(docs)
        items = [item["create"] for item in resp["items"]]
        outcomes = [_outcome(item) for item in items]
        refused = next((i for i, o in zip(items, outcomes, strict=True) if o == "retry"), None)
        if refused is None:
            BACKENDS.ok(BACKEND)
        else:  # the cluster took the request but not the documents (429, a shard unavailable)
            BACKENDS.failed(BACKEND, _item_reason(refused))
        return outcomes


_ACCEPT = {"accept": "application/json"}
_ANSWER = "errors,items.*.status,items.*.error"  # a bulk answer without what we never read

_JSON = {**_ACCEPT, "content-type": "application/json"}


def _reason(exc: Exception) -> str:
    """Return a short reason: the HTTP status and ES error type, or the transport error."""
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {_error_type(exc)}".strip()
    return type(exc).__name__  # ConnectionError, ConnectionTimeout, TlsError, ...


def _item_reason(item: dict[str, Any]) -> str:
    return f"HTTP {item.get('status')} {_type_of(item)}".strip()


def _error_type(exc: Any) -> str:
    """Return the ES error `type` of an ApiError, e.g. security_exception."""
    return _type_of(getattr(exc, "body", None))


def _type_of(answer: Any) -> str:
    """Return `error.type` of a response body or a bulk item, or ''."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return str(error.get("type", "")) if isinstance(error, dict) else ""


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
        log.append_lines(b"".join(_with_id(doc_id, source) for doc_id, source in docs))
        return ["ok"] * len(docs)


def _with_id(doc_id: str, source: bytes) -> bytes:
    """Return one NDJSON line: the source object with `_id` as its first key."""
    rest = b"}" if source == b"{}" else b"," + source[1:]
    return b'{"_id":' + dumps(doc_id) + rest + b"\n"


class DeadLetters:
    """Documents the cluster refused for their content, with the reason: never silently dropped."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20) -> None:
        self.path = path
        self._log = JsonLinesLog(path, max_bytes, keep=5)

    def write(self, index: str, doc_id: str, source: dict[str, Any], reason: str) -> None:
        """Append one refused document."""
        entry = {"at": time.time(), "index": index, "_id": doc_id, "reason": reason, "doc": source}
        self._log.append([entry])
