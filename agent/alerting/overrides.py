"""[rules.overrides]: a rule's levels and timing changed from the config, its file left alone."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace

from agent.alerting.model import SEVERITIES, Group, Rule, RuleProblems
from agent.config.settings import RuleOverride

SAFE_SIDE = {">": 1, ">=": 1, "<": -1, "<=": -1}  # where a clear level sits below the threshold


def apply(groups: list[Group], overrides: Mapping[str, RuleOverride]) -> list[Group]:
    """Return the groups with every override applied; RuleProblems naming rules.overrides.X."""
    names = sorted({r.alert for g in groups for r in g.rules})
    problems = [f"rules.overrides.{n}: no rule is called {n!r}{_closest(n, names)}"
                for n in overrides if n not in names]  # fmt: skip
    out = []
    for group in groups:
        rules = []
        for rule in group.rules:
            change = overrides.get(rule.alert)
            changed, wrong = (rule, []) if change is None else changed_rule(rule, change)
            problems += [f"rules.overrides.{rule.alert}: {w}" for w in wrong]
            rules.append(changed)
        out.append(replace(group, rules=tuple(rules)))
    if problems:
        raise RuleProblems(problems)
    return out


def _closest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def changed_rule(rule: Rule, change: RuleOverride) -> tuple[Rule, list[str]]:
    """Return the rule with the override's levels merged in, and what is wrong with the result."""
    levels: dict[str, float] = dict(rule.thresholds)
    levels.update(change.thresholds.items())
    clear: dict[str, float] = dict(rule.clear)
    clear.update(change.clear.items())
    wrong = [f"clear.{s} has no threshold of that severity" for s in clear if s not in levels]
    side = SAFE_SIDE.get(rule.op)
    if clear and side is None:
        wrong.append(f"clear makes no sense with op {rule.op}")
    for severity, level in clear.items():
        if side is not None and severity in levels and (levels[severity] - level) * side < 0:
            wrong.append(f"clear.{severity} {level:g} is past the threshold "
                         f"{levels[severity]:g}: change clear.{severity} too")  # fmt: skip
    ordered = tuple(sorted(levels.items(), key=lambda kv: SEVERITIES.index(kv[0])))
    hold = rule.hold if change.hold is None else change.hold
    keep = rule.keep_firing_for if change.keep_firing_for is None else change.keep_firing_for
    return replace(rule, thresholds=ordered, clear=clear, hold=hold, keep_firing_for=keep), wrong
