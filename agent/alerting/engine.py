"""The rules engine: evaluates groups against the store and keeps every alert instance."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.alerting import persist
from agent.alerting.expr import Vector, evaluate
from agent.alerting.model import OPS, Condition, Group, Rule, compare
from agent.alerting.state import Alert, Timing, step
from agent.store import Labels, MetricInfo, Sample, SeriesStore

log = logging.getLogger(__name__)

METRICS = {
    "ALERTS": MetricInfo(
        "gauge", "Pending and firing alert instances, as Prometheus exposes them."
    ),
    "ALERTS_FOR_STATE": MetricInfo("gauge", "When each pending or firing instance became active."),
}
Transition = tuple[Alert, str]  # an instance after its change, and its state before
# What the daemon injects, as Prometheus injects its NotifyFunc: after every evaluation of a
# group, a snapshot of every instance, the transitions it made, and the evaluation time.
Notify = Callable[[list[Alert], list[Transition], float], None]
Hit = tuple[Labels, float, bool]  # series labels, value, whether `for` applies


@dataclass
class _Pass:
    """One evaluation of one rule."""

    rule: Rule
    rid: str
    instances: dict[Labels, Alert]
    ts: float
    timing: Timing
    transitions: list[Transition] = field(default_factory=list)


def rule_id(group: Group, rule: Rule) -> str:
    """Return the key of a rule: group/alertname."""
    return f"{group.name}/{rule.alert}"


def _only_if(cond: Condition, store: SeriesStore, at: float, vector: Vector) -> Vector:
    """Keep the series whose `on` labels match a series where the condition holds."""

    def key(labels: Labels) -> tuple[str, ...]:
        d = dict(labels)
        return tuple(d.get(name, "") for name in cond.on)

    allowed = {
        key(lab) for lab, v in evaluate(cond.expr, store, at) if compare(cond.op, v, cond.value)
    }
    return [(lab, v) for lab, v in vector if key(lab) in allowed]


class RuleEngine:
    """Holds the rule groups and all alert instances; thread-safe."""

    def __init__(
        self,
        store: SeriesStore,
        groups: Sequence[Group],
        started_at: float,
        *,
        resolved_retention: float = 900.0,
        state_path: Path | None = None,
        warmup: float = 0.0,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.groups = list(groups)
        self.started_at = started_at
        self.resolved_retention = resolved_retention
        self.alerts: dict[str, dict[Labels, Alert]] = {}
        self.notify = notify
        self._seen: dict[str, dict[Labels, float]] = {}  # for absent_for, per rule
        self._labels: dict[tuple[str, Labels, str], Labels] = {}
        self._lock = threading.RLock()
        self.state_path = state_path
        # Right after a start the samplers may not have reported yet: restored instances
        # are not taken for inactive until the warm-up is over.
        self.warmup_until = started_at + warmup
        self._dirty = False
        self._saved = started_at
        store.describe(METRICS)

    def holds(self) -> dict[str, float]:
        """Return each rule's `for`, by rule id."""
        return {rule_id(g, r): r.hold for g in self.groups for r in g.rules}

    def restore(self, alerts: Sequence[Alert]) -> None:
        """Put restored instances back."""
        with self._lock:
            for alert in alerts:
                self.alerts.setdefault(alert.rule, {})[alert.labels] = alert

    def save(self, now: float, force: bool = False) -> None:
        """Write the state if it changed, or 30 s passed (the outage clock), or when forced."""
        if self.state_path is None:
            return
        with self._lock:
            if not (force or self._dirty or now - self._saved >= 30):
                return
            alerts = self.all_alerts()
            self._dirty, self._saved = False, now
        try:
            persist.save(self.state_path, alerts, now)
        except OSError as exc:
            log.error("cannot write alert state %s: %s", self.state_path, exc)

    def replace_groups(self, groups: Sequence[Group]) -> None:
        """Swap in a new rule set, as Prometheus does on reload.

        A rule of the same group, name and labels keeps its instances and their timers (as
        Prometheus' CopyState matches rules); the next evaluation applies its new expression
        and thresholds to them, so an instance that no longer holds resolves as usual. The
        instances of a removed or relabelled rule are dropped; delivery sends a resolve for any
        it had notified as firing.
        """
        with self._lock:
            old = {rule_id(g, r): _identity(r) for g in self.groups for r in g.rules}
            keep = {rule_id(g, r) for g in groups for r in g.rules
                    if old.get(rule_id(g, r)) == _identity(r)}  # fmt: skip
            self.groups = list(groups)
            for gone in set(self.alerts) - keep:
                del self.alerts[gone]
            for rid in set(self._seen) - keep:
                del self._seen[rid]
            self._dirty = True

    def evaluate_group(self, group: Group, ts: float) -> None:
        """Evaluate every rule of a group at time `ts`, then hand the result to delivery."""
        with self._lock:  # delivery inside: groups hand their snapshots over in order
            if not any(g is group for g in self.groups):
                return  # queued before a reload replaced it: its rules' instances are gone
            transitions: list[Transition] = []
            for rule in group.rules:
                transitions += self.evaluate_rule(group, rule, ts)
            if self.notify is not None:
                self.notify([a.copy() for a in self.all_alerts()], transitions, ts)

    def evaluate_rule(self, group: Group, rule: Rule, ts: float) -> list[Transition]:
        """Evaluate one rule, advance each of its instances, and return their transitions."""
        rid = rule_id(group, rule)
        instances = self.alerts.setdefault(rid, {})
        vector = evaluate(rule.expr, self.store, ts)
        if rule.only_if is not None:
            vector = _only_if(rule.only_if, self.store, ts, vector)
        active = self._active(rid, rule, vector, instances, ts)
        timing = Timing(rule.hold, rule.keep_firing_for, self.resolved_retention)
        one = _Pass(rule, rid, instances, ts, timing)
        warming = ts < self.warmup_until
        for labels in set(instances) | set(active):
            if warming and labels not in active:
                continue
            self._advance(one, labels, active.get(labels))
        return one.transitions

    def _active(self, rid: str, rule: Rule, vector: Vector, instances: dict[Labels, Alert],
                ts: float) -> dict[Labels, Hit]:  # fmt: skip
        """Return the instances that hold now, by their full labels."""
        out: dict[Labels, Hit] = {}
        op = OPS[rule.op]
        for series, value in vector:
            for severity, threshold in rule.thresholds:
                if op(value, threshold):
                    out[self._full_labels(rule, series, severity)] = (series, value, True)
                    continue
                # Past the threshold no more: a firing instance holds until it clears (hysteresis).
                clear = rule.clear.get(severity)
                if clear is None or not instances or not op(value, clear):
                    continue
                full = self._full_labels(rule, series, severity)
                alert = instances.get(full)
                if alert is not None and alert.state == "firing":
                    out[full] = (series, value, True)
        if rule.absent_for is not None:
            for series in self._absent(rid, rule, ts):
                labels = (*series, ("absent", "true"))
                full = self._full_labels(rule, tuple(sorted(labels)), rule.absent_severity)
                out[full] = (series, 1.0, False)
        return out

    def _absent(self, rid: str, rule: Rule, ts: float) -> list[Labels]:
        """Label sets with no sample for absent_for; the selector's labels if none was ever seen."""
        assert rule.absent_for is not None
        seen = self._seen.setdefault(rid, {})
        selector = rule.expr.selector
        for series in self.store.select(selector.name, selector.matches, selector):
            newest = self.store.newest(series, float("-inf"), ts)
            if newest is not None:
                seen[series.labels] = max(seen.get(series.labels, newest[0]), newest[0])
        silent = [lab for lab, last in seen.items() if ts - last >= rule.absent_for]
        if not seen and ts - self.started_at >= rule.absent_for:
            silent.append(rule.expr.selector.equalities())
        return silent

    def _advance(self, one: _Pass, labels: Labels, hit: Hit | None) -> None:
        alert = one.instances.get(labels)
        before = alert.state if alert else "inactive"
        timing = one.timing
        if hit is not None:
            series, value, uses_hold = hit
            alert = alert or Alert(one.rid, labels, "pending", one.ts)
            alert.value = value
            templates = one.rule.annotations
            alert.annotations = {k: t.render(dict(series), value) for k, t in templates.items()}
            if not uses_hold:  # absent_for has already waited
                timing = Timing(0.0, timing.keep_firing_for, timing.resolved_retention)
        new = step(alert, hit is not None, one.ts, timing)
        if new is None:
            one.instances.pop(labels, None)
            return
        one.instances[labels] = new
        if new.state != before:
            self._dirty = True
            one.transitions.append((new.copy(), before))

    def _full_labels(self, rule: Rule, series: Labels, severity: str) -> Labels:
        """Series labels + rule labels + alertname + severity, built once per instance."""
        key = (rule.alert, series, severity)
        full = self._labels.get(key)
        if full is None:
            if len(self._labels) > 200_000:
                self._labels.clear()
            labels = dict(series)
            labels.update(rule.labels)
            labels["alertname"], labels["severity"] = rule.alert, severity
            full = self._labels[key] = tuple(sorted(labels.items()))
        return full

    def run_group(self, group: Group, ts: float) -> list[Sample]:
        """Evaluate a group at `ts`, save the state if it changed, return its ALERTS series."""
        self.evaluate_group(group, ts)
        self.save(ts)
        return list(self.samples(group))

    def samples(self, group: Group) -> Iterator[Sample]:
        """Yield ALERTS and ALERTS_FOR_STATE for the group's pending and firing instances."""
        with self._lock:
            for rule in group.rules:
                for alert in self.alerts.get(rule_id(group, rule), {}).values():
                    if alert.state == "resolved":
                        continue
                    state = tuple(sorted((*alert.labels, ("alertstate", alert.state))))
                    yield Sample("ALERTS", 1.0, state)
                    yield Sample("ALERTS_FOR_STATE", alert.active_at, alert.labels)

    def all_alerts(self) -> list[Alert]:
        """Return every instance (a snapshot)."""
        with self._lock:
            return [a for per_rule in self.alerts.values() for a in per_rule.values()]


def _identity(rule: Rule) -> Mapping[str, str]:
    """Return what must be equal, beside the rule id, for a rule's instances to be kept."""
    return rule.labels
