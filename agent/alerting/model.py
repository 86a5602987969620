"""What a rule is: Rule, Condition, Group, the comparison operators and the severities."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.alerting.expr import Expr
from agent.alerting.templates import Template

SEVERITIES = ("info", "warning", "critical")  # ascending: a higher one inhibits a lower one
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
        "==": operator.eq, "!=": operator.ne}  # fmt: skip


def compare(op: str, value: float, threshold: float) -> bool:
    """Return `value op threshold`."""
    return bool(OPS[op](value, threshold))


@dataclass(frozen=True)
class Condition:
    """`only_if`: the rule applies only where this holds, joined on the `on` labels."""

    expr: Expr
    op: str
    value: float
    on: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """One alerting rule with one instance per label set and threshold level."""

    alert: str
    expr: Expr
    op: str = ">"
    thresholds: tuple[tuple[str, float], ...] = ()
    clear: Mapping[str, float] = field(default_factory=dict)
    hold: float = 0.0  # `for`
    keep_firing_for: float = 0.0
    absent_for: float | None = None
    absent_severity: str = "warning"
    only_if: Condition | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Template] = field(default_factory=dict)
    source: str = ""  # file:line


@dataclass(frozen=True)
class Group:
    """A named group of rules evaluated together on one interval."""

    name: str
    interval: float | None
    rules: tuple[Rule, ...]
    source: str = ""


class RuleProblems(Exception):
    """Raised with every problem found, each as 'file:line: message'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
