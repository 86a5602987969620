"""Rule unit tests in the file format of `promtool test rules`, run by our engine."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.alerting.engine import RuleEngine
from agent.alerting.rules import load_files
from agent.alerting.yamlines import load
from agent.durations import parse_duration
from agent.matchers import parse_selector
from agent.store import SeriesStore, sample

_TERM = re.compile(r"^(_|stale|[-+]?[\d.eE+-]+?)(?:([+-])([\d.eE+-]+))?(?:x(\d+))?$")


def expand_values(text: str) -> list[float | None]:
    """Expand promtool's notation: '1+2x3' -> 1 3 5 7, '5x2' -> 5 5 5, '_x2' -> two gaps."""
    out: list[float | None] = []
    for term in str(text).split():
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"bad series value {term!r}")
        start, sign, step, times = m.groups()
        if start in ("_", "stale"):
            out += [None] * (int(times) if times else 1)
            continue
        base, delta = float(start), float(step or 0) * (-1 if sign == "-" else 1)
        count = int(times) + 1 if times else 1
        out += [base + i * delta for i in range(count)]
    return out


def _load_series(store: SeriesStore, test: dict[str, Any], interval: float) -> None:
    for n, item in enumerate(test.get("input_series") or []):
        sel = parse_selector(item["series"])
        labels = tuple(sorted((m.name, m.value) for m in sel.matchers))
        for i, value in enumerate(expand_values(item.get("values", ""))):
            if value is not None:
                store.ingest(f"input{n}", [sample(sel.name, value, **dict(labels))], i * interval)


def _order(row: dict[str, Any]) -> str:
    """Order alerts as promtool does not care: by content, whatever the key order."""
    return json.dumps(row, sort_keys=True)


def _got(engine: RuleEngine, alertname: str) -> list[dict[str, Any]]:
    rows = []
    for alert in engine.all_alerts():
        labels = dict(alert.labels)
        if alert.state == "firing" and labels.pop("alertname") == alertname:
            rows.append({"labels": labels, "annotations": alert.annotations})
    return sorted(rows, key=_order)


def _expected(case: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"labels": {k: str(v) for k, v in (e.get("exp_labels") or {}).items()},
             "annotations": {k: str(v) for k, v in (e.get("exp_annotations") or {}).items()}}
            for e in case.get("exp_alerts") or []]  # fmt: skip
    return sorted(rows, key=_order)


def run_test(test: dict[str, Any], rule_files: list[Path], eval_interval: float) -> Iterator[str]:
    """Run one test case; yield a failure message for each expectation that does not hold."""
    interval = parse_duration(test.get("interval", "1m"))
    cases = sorted(test.get("alert_rule_test") or [], key=lambda c: parse_duration(c["eval_time"]))
    if test.get("promql_expr_test"):
        yield "promql_expr_test is not supported: write alert_rule_test cases"
    last = max([parse_duration(c["eval_time"]) for c in cases] or [0.0])
    series = test.get("input_series") or [{}]
    longest = max(len(expand_values(s.get("values", ""))) for s in series)
    store = SeriesStore(retention=(longest + 2) * interval + last, interval=interval)
    _load_series(store, test, interval)
    groups = load_files(rule_files)
    engine = RuleEngine(store, groups, started_at=0.0)
    ts, steps = 0.0, iter(cases)
    case = next(steps, None)
    while case is not None:
        for group in groups:
            engine.evaluate_group(group, ts)
        while case is not None and parse_duration(case["eval_time"]) <= ts:
            got, want = _got(engine, case["alertname"]), _expected(case)
            if got != want:
                head = f"{case['alertname']} at {case['eval_time']}"
                yield f"{head}:\n    expected: {json.dumps(want)}\n    got:      {json.dumps(got)}"
            case = next(steps, None)
        ts += eval_interval


def run_file(path: Path) -> list[str]:
    """Run every test in a promtool-format test file; return the failures."""
    doc = load(path.read_text(encoding="utf-8"))
    base = path.parent
    rule_files = [base / f for f in doc.get("rule_files") or []]
    eval_interval = parse_duration(doc.get("evaluation_interval", "1m"))
    failures = []
    for i, test in enumerate(doc.get("tests") or []):
        name = test.get("name", f"test {i}")
        failures += [f"{path}: {name}: {msg}" for msg in run_test(test, rule_files, eval_interval)]
    return failures
