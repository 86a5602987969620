"""Log records to ECS documents: request logs in ECS's `gen_ai` fields, alert and audit logs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

# The request-log keys a token count may come under; the first one found wins.
TOKENS_IN = ("input_length", "input_tokens", "prompt_tokens")
TOKENS_OUT = ("output_length", "output_tokens", "completion_tokens")
MAX_INT = 2**31 - 1  # ECS types token counts as `integer`


def finite(value: Any) -> float | None:
    """Return a JSON number as a finite float, else None (bools, 1e999, strings)."""
    kind = type(value)
    if kind is float:  # the common case first: this runs for every request line
        return value if math.isfinite(value) else None
    if kind is not int:  # bool is a subclass of int, not int itself; strings, None, lists
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a float's range
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    number = finite(value)
    if number is None or not 0 <= number < 253402300800:  # year 1970 to 9999, as ES dates take
        return None
    return datetime.fromtimestamp(number, UTC).isoformat().replace("+00:00", "Z")


def _first(get: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if (value := get(key)) is not None:
            return value
    return None


def _tokens(value: Any) -> Any:
    """Pass a count through as is (a bad one is the cluster's to refuse, with its reason)."""
    if isinstance(value, float) and value.is_integer() and 0 <= value <= MAX_INT:
        return int(value)  # 120.0 from a JSON encoder is still 120 tokens
    return value


def _model(get: Any, request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Fill the model names; return `dsagent.request`'s model_version where it is only that."""
    model, version = get("model"), get("model_version")
    if model is not None:  # the model's name: a version beside it is only a version
        request["model"] = response["model"] = str(model)
        if version is not None:
            return {"model_version": str(version)}
    elif version is not None:  # the ops guide's field names the model that served the request
        response["model"] = str(version)
    return {}


def _exchange(get: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return `gen_ai.request`, `gen_ai.response` and `dsagent.request` of one record."""
    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    own = _model(get, request, response)
    if (reasons := _first(get, ("finish_reasons", "finish_reason"))) is not None:
        listed = reasons if isinstance(reasons, list) else [reasons]
        response["finish_reasons"] = [str(r) for r in listed]
    if (value := get("response_id")) is not None:
        response["id"] = str(value)
    if (value := get("max_tokens")) is not None:
        request["max_tokens"] = _tokens(value)
    return request, response, own


def _gen_ai(record: dict[str, Any]) -> dict[str, Any]:
    """Build `gen_ai` (and `dsagent.request` for what ECS lacks) from one request record."""
    get = record.get  # straight-line on purpose: this runs for every request line shipped
    usage: dict[str, Any] = {}
    if (count := _first(get, TOKENS_IN)) is not None:
        usage["input_tokens"] = _tokens(count)
    if (count := _first(get, TOKENS_OUT)) is not None:
        usage["output_tokens"] = _tokens(count)
    request, response, own = _exchange(get)
    gen_ai: dict[str, Any] = {"usage": usage} if usage else {}
    if request:
        gen_ai["request"] = request
    if response:
        gen_ai["response"] = response
    if (value := get("operation")) is not None:
        gen_ai["operation"] = {"name": str(value)}
    if (value := get("provider")) is not None:
        gen_ai["system"] = str(value)
    if (value := get("gpu_util")) is not None:
        own["gpu_util"] = value
    doc: dict[str, Any] = {"gen_ai": gen_ai} if gen_ai else {}
    if own:
        doc["dsagent"] = {"request": own}
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
