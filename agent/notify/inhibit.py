"""Inhibition: a firing source alert mutes target alerts that share the `equal` labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.config_notify import InhibitConfig
from agent.matchers import Matcher, parse_matchers

Labels = Mapping[str, str]


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

    def mutes(self, target: Labels, source: Labels) -> bool:
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


def inhibited(target: Labels, firing: Sequence[Labels], rules: Sequence[InhibitRule]) -> bool:
    """Return True if any firing alert (other than the target) inhibits the target."""
    return any(rule.mutes(target, src) for rule in rules for src in firing if src is not target)
