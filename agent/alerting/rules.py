"""The one rule loader: YAML files of groups, validated with file:line for every problem."""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.alerting.model import Group, Rule, RuleProblems
from agent.alerting.schema import rule_fields
from agent.alerting.yamlines import LineDict, load
from agent.config.settings import RulesConfig
from agent.durations import parse_duration


def default_rules_dir() -> Path:
    """Return where the packaged default rules are: the .deb's, the wheel's, or the checkout's."""
    for candidate in (Path("/usr/share/dsagent/rules"), Path(sys.prefix) / "share/dsagent/rules",
                      Path(__file__).resolve().parents[2] / "rules"):  # fmt: skip
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "rules"


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories (*.yml, *.yaml) and globs into a sorted list of files."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
        elif any(c in str(raw) for c in "*?["):
            out += sorted(Path(p) for p in glob.glob(str(raw)))
        else:
            out.append(path)
    return out


def load_configured(cfg: RulesConfig) -> list[Group]:
    """Load the packaged rules (unless turned off) and the configured ones, minus disabled ones."""
    from agent.alerting import overrides

    off = set(cfg.disabled)
    files: list[str | Path] = [default_rules_dir()] if cfg.defaults else []
    groups = load_files([*files, *cfg.paths])
    kept = [replace(g, rules=tuple(r for r in g.rules if r.alert not in off)) for g in groups]
    return overrides.apply(kept, cfg.overrides)


def load_files(paths: Iterable[str | Path]) -> list[Group]:
    """Load rule files; raise RuleProblems listing every problem in every file."""
    groups: list[Group] = []
    problems: list[str] = []
    for path in expand(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: undecodable, or a NUL in the name
            problems.append(f"{path}: cannot read: {exc}")
            continue
        file_groups, file_problems = parse_file(text, str(path))
        groups += file_groups
        problems += file_problems
    if problems:
        raise RuleProblems(problems)
    return groups


def parse_file(text: str, name: str) -> tuple[list[Group], list[str]]:
    """Parse one rule file's text; return its groups and its problems."""
    try:
        doc = load(text)
    except ValueError as exc:
        return [], [f"{name}:{str(exc).removeprefix('line ')}"]
    if doc is None:
        return [], []
    if not isinstance(doc, LineDict) or not isinstance(doc.get("groups"), list):
        return [], [f"{name}:1: expected a mapping with a 'groups' list"]
    groups: list[Group] = []
    problems: list[str] = []
    for raw in doc["groups"]:
        group = _group(raw, name, problems)
        if group:
            groups.append(group)
    return groups, problems


def kind(value: object) -> str:
    """Name a YAML value's shape for an error: a number 5, a mapping, nothing."""
    if value is None:
        return "nothing"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{'a number' if isinstance(value, int | float) else 'a string'} {value!r:.40}"


def _group(raw: Any, name: str, problems: list[str]) -> Group | None:
    if not isinstance(raw, LineDict) or not isinstance(raw.get("name"), str):
        problems.append(f"{name}:{getattr(raw, 'line', 1)}: a group needs a 'name'")
        return None
    interval = None
    if "interval" in raw:
        try:
            interval = parse_duration(raw["interval"])
        except ValueError as exc:
            problems.append(f"{name}:{raw.line_of('interval')}: {exc}")
    rules, seen = [], set()
    items = raw.get("rules") or []
    if not isinstance(items, list):
        problems.append(f"{name}:{raw.line_of('rules')}: group {raw['name']!r}: rules must be a "
                        f"list of rules, not {kind(items)}")  # fmt: skip
        items = []
    for item in items:
        rule = _rule(item, name, problems, raw.line_of("rules"))
        if rule is None:
            continue
        if rule.alert in seen:
            problems.append(
                f"{rule.source}: duplicate alert name {rule.alert!r} in group {raw['name']!r}"
            )
        seen.add(rule.alert)
        rules.append(rule)
    return Group(raw["name"], interval, tuple(rules), f"{name}:{raw.line}")


def _rule(raw: Any, name: str, problems: list[str], near: int) -> Rule | None:
    """Build one rule; `near` is the line of its group's rules list (a scalar has none)."""
    if not isinstance(raw, LineDict):
        problems.append(f"{name}:{near}: a rule must be a mapping with alert, expr and "
                        f"thresholds, not {kind(raw)}")  # fmt: skip
        return None
    errors: list[tuple[str, str]] = []  # (key, message)
    fields = rule_fields(raw, errors)
    for key, message in errors:
        problems.append(f"{name}:{raw.line_of(key)}: {raw.get('alert', '?')}: {message}")
    if errors:
        return None
    return Rule(**fields, source=f"{name}:{raw.line}")
