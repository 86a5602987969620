"""Log records to ECS documents: request logs in ECS's `gen_ai` fields, alert and audit logs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

# Request-log keys with an ECS home: (ECS path, how the value is taken). The first key found wins.
TOKENS_IN = ("input_length", "input_tokens", "prompt_tokens")
TOKENS_OUT = ("output_length", "output_tokens", "completion_tokens")
STRINGS = {
    "response_id": ("gen_ai", "response", "id"),
    "operation": ("gen_ai", "operation", "name"),
    "provider": ("gen_ai", "system"),
}
MAX_INT = 2**31 - 1  # ECS types token counts as `integer`


def finite(value: Any) -> float | None:
    """Return a JSON number as a finite float, else None (bools, 1e999, strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a float's range
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> str | None:
    number = finite(value)
    if number is not None:
        if not 0 <= number < 253402300800:  # year 1970 to 9999, what ES date fields take
            return None
        return datetime.fromtimestamp(number, UTC).isoformat().replace("+00:00", "Z")
    return value if isinstance(value, str) else None


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((record[k] for k in keys if record.get(k) is not None), None)


def _tokens(value: Any) -> Any:
    """Pass a count through as is (a bad one is the cluster's to refuse, with its reason)."""
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_INT:
        return int(value)  # 120.0 from a JSON encoder is still 120 tokens
    return value


def _model(doc: dict[str, Any], record: dict[str, Any]) -> None:
    model, version = record.get("model"), record.get("model_version")
    if model is not None:  # the model's name: a version beside it is only a version
        _put(doc, ("gen_ai", "request", "model"), str(model))
        _put(doc, ("gen_ai", "response", "model"), str(model))
        if version is not None:
            _put(doc, ("dsagent", "request", "model_version"), str(version))
    elif version is not None:  # the ops guide's field names the model that served the request
        _put(doc, ("gen_ai", "response", "model"), str(version))


def _gen_ai(record: dict[str, Any]) -> dict[str, Any]:
    """Build `gen_ai` (and `dsagent.request` for what ECS lacks) from one request record."""
    doc: dict[str, Any] = {}
    if (count := _first(record, TOKENS_IN)) is not None:
        _put(doc, ("gen_ai", "usage", "input_tokens"), _tokens(count))
    if (count := _first(record, TOKENS_OUT)) is not None:
        _put(doc, ("gen_ai", "usage", "output_tokens"), _tokens(count))
    _model(doc, record)
    reasons = _first(record, ("finish_reasons", "finish_reason"))
    if reasons is not None:
        listed = reasons if isinstance(reasons, list) else [reasons]
        _put(doc, ("gen_ai", "response", "finish_reasons"), [str(r) for r in listed])
    for key, path in STRINGS.items():
        if record.get(key) is not None:
            _put(doc, path, str(record[key]))
    if record.get("max_tokens") is not None:
        _put(doc, ("gen_ai", "request", "max_tokens"), _tokens(record["max_tokens"]))
    if record.get("gpu_util") is not None:
        _put(doc, ("dsagent", "request", "gpu_util"), record["gpu_util"])
    return doc


def request_doc(record: dict[str, Any]) -> dict[str, Any]:
    """Map one request-log record onto ECS (`gen_ai`, `event`, `error`, `transaction`)."""
    doc = _gen_ai(record)
    if (ts := _timestamp(record.get("timestamp"))) is not None:
        doc["@timestamp"] = ts
    if record.get("request_id") is not None:
        doc["transaction"] = {"id": str(record["request_id"])}
    error = record.get("error_code")
    event: dict[str, Any] = {"outcome": "failure" if error else "success"}
    latency = finite(record.get("latency_ms"))
    if latency is not None and 0 <= latency < 9.2e12:  # ECS: nanoseconds, within a long
        event["duration"] = int(latency * 1_000_000)
    doc["event"] = event
    if error:
        doc["error"] = {"code": str(error)}
    return doc


def alert_doc(record: dict[str, Any]) -> dict[str, Any]:
    """Map one alert-log line: the alert's fields under dsagent.alert, its labels under labels."""
    alert = {k: record.get(k) for k in ("state", "previous", "severity", "value")}
    annotations, labels = record.get("annotations"), record.get("labels")
    summary = annotations.get("summary") if isinstance(annotations, dict) else None
    return {
        "@timestamp": record.get("@timestamp"),
        "message": str(summary if summary is not None else record.get("alertname", "")),
        "labels": labels if isinstance(labels, dict) else {},
        "dsagent": {"alert": {**alert, "name": record.get("alertname")}},
        "event": {"kind": "alert"},
    }


def audit_doc(record: dict[str, Any]) -> dict[str, Any]:
    """Map one audit-log line onto ECS: who, what, the answer."""
    status = record.get("status")
    failed = not isinstance(status, int) or isinstance(status, bool) or status >= 400
    return {
        "@timestamp": record.get("@timestamp"),
        "user": {"name": record.get("who"), "roles": [record.get("role")]},
        "http": {"request": {"method": record.get("method")},
                 "response": {"status_code": record.get("status")}},
        "url": {"path": record.get("path")},
        "source": {"ip": record.get("remote")},
        "event": {"kind": "event", "outcome": "failure" if failed else "success",
                  "reason": record.get("reason")},
    }  # fmt: skip


MAPPERS = {"dsagent.alerts": alert_doc, "dsagent.audit": audit_doc}
