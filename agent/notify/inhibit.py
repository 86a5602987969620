"""Inhibition: a firing source alert mutes target alerts that share the `equal` labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.alerting.model import SEVERITIES
from agent.alerting.state import Alert
from agent.config.notify import InhibitConfig
from agent.matchers import Matcher, parse_matchers
from agent.store import LabelMap, Labels


@dataclass(frozen=True)
class InhibitRule:
    """Sources, targets, and the labels they must share."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: InhibitConfig) -> InhibitRule:
        """Build from a [[inhibit_rules]] entry."""

        def parse(texts: list[str]) -> tuple[Matcher, ...]:
            return tuple(m for t in texts for m in parse_matchers(t))

        return cls(parse(cfg.source_matchers), parse(cfg.target_matchers), tuple(cfg.equal))

    def mutes(self, target: LabelMap, source: LabelMap) -> bool:
        """Return True if `source` (firing) inhibits `target`."""
        return (all(m.matches(target) for m in self.target)
                and all(m.matches(source) for m in self.source)
                and all(source.get(k, "") == target.get(k, "") for k in self.equal))  # fmt: skip


# A down worker mutes its own latency and throughput alerts.
DEFAULTS = (
    InhibitRule.from_config(InhibitConfig(
        source_matchers=['alertname="WorkerDown"'],
        target_matchers=['alertname=~"InferenceLatencyHigh|InferenceThroughputLow"'],
        equal=["worker"])),
)  # fmt: skip


def inhibited(target: LabelMap, firing: Sequence[LabelMap], rules: Sequence[InhibitRule]) -> bool:
    """Return True if any firing alert (other than the target) inhibits the target."""
    return any(rule.mutes(target, src) for rule in rules for src in firing if src is not target)


def outranked(alerts: Iterable[Alert]) -> set[Labels]:
    """Return the labels of instances inhibited by a firing higher severity of the same labels.

    A rule's levels are separate instances (severity warning, critical); while the critical
    one fires, on-call hears of it alone.
    """
    alerts = list(alerts)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    top: dict[tuple[str, Labels], int] = {}
    for a in alerts:
        if a.state == "firing":
            key = (a.rule, _without_severity(a.labels))
            top[key] = max(top.get(key, -1), rank.get(a.severity, -1))
    return {
        a.labels
        for a in alerts
        if top.get((a.rule, _without_severity(a.labels)), -1) > rank.get(a.severity, -1)
    }


def _without_severity(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != "severity")
