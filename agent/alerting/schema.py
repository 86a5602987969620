"""Validation of one rule's keys, each problem named by the key it is about."""

from __future__ import annotations

from typing import Any

from agent.alerting.expr import parse_expr
from agent.alerting.model import SEVERITIES, Condition
from agent.alerting.templates import Template, TemplateError
from agent.alerting.yamlines import LineDict
from agent.durations import parse_duration

OPS = (">", ">=", "<", "<=", "==", "!=")
RULE_KEYS = {"alert", "expr", "op", "thresholds", "clear", "for", "keep_firing_for", "absent_for",
             "absent_severity", "only_if", "labels", "annotations"}  # fmt: skip

Errors = list[tuple[str, str]]


def _duration(raw: LineDict, key: str, errors: Errors) -> float | None:
    if key not in raw:
        return None
    try:
        return parse_duration(raw[key])
    except ValueError as exc:
        errors.append((key, f"{key}: {exc}"))
        return None


def _levels(raw: LineDict, key: str, errors: Errors) -> dict[str, float]:
    value = raw.get(key)
    if value is None:
        return {}
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "clear":
        return {s: float(value) for s in SEVERITIES}
    if not isinstance(value, dict):
        errors.append((key, f"{key} must map severities ({', '.join(SEVERITIES)}) to numbers"))
        return {}
    out = {}
    for severity, number in value.items():
        if severity not in SEVERITIES:
            errors.append((key, f"{key}: unknown severity {severity!r}"))
        elif isinstance(number, bool) or not isinstance(number, int | float):
            errors.append((key, f"{key}.{severity} must be a number, not {number!r}"))
        else:
            out[severity] = float(number)
    return out


def _strings(raw: LineDict, key: str, errors: Errors) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        errors.append((key, f"{key} must be a mapping of names to strings"))
        return {}
    return {k: str(v) for k, v in value.items()}


def _templates(raw: LineDict, errors: Errors) -> dict[str, Template]:
    out = {}
    for key, text in _strings(raw, "annotations", errors).items():
        try:
            out[key] = Template(text)
        except TemplateError as exc:
            errors.append(("annotations", f"annotation {key!r}: template error: {exc}"))
    return out


def _only_if(raw: LineDict, errors: Errors) -> Any:
    spec = raw.get("only_if")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("expr"), str):
        errors.append(("only_if", "only_if needs {expr: 'metric op number', on: [labels]}"))
        return None
    parts = spec["expr"].rsplit(None, 2)
    try:
        if len(parts) != 3 or parts[1] not in OPS:
            raise ValueError(f"only_if expr must be 'expression op number', not {spec['expr']!r}")
        on = spec.get("on") or []
        if not isinstance(on, list):
            raise ValueError("only_if.on must be a list of label names")
        return Condition(parse_expr(parts[0]), parts[1], float(parts[2]), tuple(map(str, on)))
    except ValueError as exc:
        errors.append(("only_if", str(exc)))
        return None


def _check_levels(raw: LineDict, fields: dict[str, Any], errors: Errors) -> None:
    thresholds, clear = fields["thresholds"], fields["clear"]
    if not thresholds and fields["absent_for"] is None:
        errors.append(("thresholds", "threshold missing: give thresholds (or absent_for)"))
    if fields["op"] not in OPS:
        errors.append(("op", f"op must be one of {' '.join(OPS)}, not {fields['op']!r}"))
    elif clear and fields["op"] in ("==", "!="):
        errors.append(("clear", f"clear makes no sense with op {fields['op']}"))
    if "clear" in raw and isinstance(raw["clear"], dict):
        for severity in clear:
            if severity not in dict(thresholds):
                errors.append(("clear", f"clear.{severity} has no threshold of that severity"))
    if fields["absent_severity"] not in SEVERITIES:
        errors.append(("absent_severity", f"unknown severity {fields['absent_severity']!r}"))


def rule_fields(raw: LineDict, errors: Errors) -> dict[str, Any]:
    """Return the Rule constructor's keyword arguments, or append errors."""
    for key in raw:
        if key not in RULE_KEYS:
            errors.append((key, f"unknown key {key!r}"))
    alert = raw.get("alert")
    if not isinstance(alert, str) or not alert.isidentifier():
        errors.append(("alert", f"alert must be a name like GpuUtilizationHigh, not {alert!r}"))
    expr = None
    try:
        expr = parse_expr(str(raw["expr"])) if "expr" in raw else None
        if expr is None:
            errors.append(("alert", "expr missing"))
    except ValueError as exc:
        errors.append(("expr", f"bad expression: {exc}"))
    levels = _levels(raw, "thresholds", errors)
    fields = {
        "alert": alert, "expr": expr, "op": str(raw.get("op", ">")),
        "thresholds": tuple(sorted(levels.items(), key=lambda kv: SEVERITIES.index(kv[0]))),
        "clear": _levels(raw, "clear", errors), "hold": _duration(raw, "for", errors) or 0.0,
        "keep_firing_for": _duration(raw, "keep_firing_for", errors) or 0.0,
        "absent_for": _duration(raw, "absent_for", errors),
        "absent_severity": str(raw.get("absent_severity", "warning")),
        "only_if": _only_if(raw, errors), "labels": _strings(raw, "labels", errors),
        "annotations": _templates(raw, errors),
    }  # fmt: skip
    if isinstance(raw.get("clear"), int | float):
        fields["clear"] = {s: v for s, v in fields["clear"].items() if s in levels}
    _check_levels(raw, fields, errors)
    return fields
