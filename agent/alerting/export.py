"""Export our rules as a Prometheus alerting-rule file, one PromQL rule per threshold level."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from agent.alerting.model import Group, Rule
from agent.durations import format_duration


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar


def level_expr(rule: Rule, severity: str, threshold: float) -> tuple[str, list[str]]:
    """Return the PromQL for one level and the comments that explain approximations."""
    expr, comments = str(rule.expr), []
    main = f"{expr} {rule.op} {threshold:g}"
    if rule.expr.func in ("rate", "increase"):
        comments.append(f"PromQL's {rule.expr.func} extrapolates to the window's edges; "
                        "the agent uses the growth it observed")  # fmt: skip
    clear = rule.clear.get(severity)
    if clear is not None:
        ignored = ", ".join(["alertname", "alertstate", "severity", *sorted(rule.labels)])
        alerts = f'ALERTS{{alertname="{rule.alert}",severity="{severity}",alertstate="firing"}}'
        main = f"({main}) or ({expr} {rule.op} {clear:g} and ignoring({ignored}) {alerts})"
        comments.append(f"clear: {clear:g} kept as hysteresis through the ALERTS series")
    if rule.only_if is not None:
        cond = rule.only_if
        main = f"({main}) and on({', '.join(cond.on)}) ({cond.expr} {cond.op} {cond.value:g})"
    return main, comments


def _rule_lines(rule: Rule, expr: str, labels: dict[str, str], comments: list[str], *,
                hold: float, keep: float) -> Iterator[str]:  # fmt: skip
    for comment in comments:
        yield f"      # {comment}"
    yield f"      - alert: {rule.alert}"
    yield f"        expr: {_q(expr)}"
    if hold:
        yield f"        for: {format_duration(hold)}"
    if keep:
        yield f"        keep_firing_for: {format_duration(keep)}"
    yield "        labels:"
    yield from (f"          {k}: {_q(v)}" for k, v in sorted(labels.items()))
    if rule.annotations:
        yield "        annotations:"
        yield from (f"          {k}: {_q(t.text)}" for k, t in sorted(rule.annotations.items()))


def rule_lines(rule: Rule) -> Iterator[str]:
    """Yield the exported rules of one of ours: one per level, one for absence."""
    for severity, threshold in rule.thresholds:
        expr, comments = level_expr(rule, severity, threshold)
        labels = {**rule.labels, "severity": severity}
        yield from _rule_lines(
            rule, expr, labels, comments, hold=rule.hold, keep=rule.keep_firing_for
        )
    if rule.absent_for is not None:
        sel = rule.expr.selector
        expr = f"absent_over_time({sel}[{format_duration(rule.absent_for)}])"
        labels = {**rule.labels, "severity": rule.absent_severity, "absent": "true"}
        note = ["absent_for: PromQL fires only when no series matches; "
                "the agent also fires for each series that went silent"]  # fmt: skip
        yield from _rule_lines(rule, expr, labels, note, hold=0, keep=0)


def export(groups: Sequence[Group]) -> str:
    """Return a Prometheus rule file for the groups."""
    lines = ["# Exported by `dsagent rules export --format prometheus`.", "groups:"]
    for group in groups:
        lines.append(f"  - name: {_q(group.name)}")
        if group.interval:
            lines.append(f"    interval: {format_duration(group.interval)}")
        lines.append("    rules:")
        for rule in group.rules:
            lines.extend(rule_lines(rule))
    return "\n".join(lines) + "\n"
