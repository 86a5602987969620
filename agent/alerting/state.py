"""The alert state machine, as Prometheus' rules/alerting.go: clock-free, handed the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.store import Labels

State = Literal["pending", "firing", "resolved"]


@dataclass
class Alert:
    """One alert instance: a rule, a label set, one severity."""

    rule: str  # group/alertname
    labels: Labels  # series labels + rule labels + alertname + severity
    state: State
    active_at: float
    value: float = 0.0
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        """The instance's severity label."""
        return dict(self.labels).get("severity", "")

    def copy(self) -> Alert:
        """Return a shallow copy, as copy.copy does, without its reduce protocol's cost.

        Every evaluation hands delivery a copy of every instance: copy.copy was a fifth of it.
        """
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


@dataclass(frozen=True)
class Timing:
    """The rule's durations that drive the state machine."""

    hold: float = 0.0  # `for`
    keep_firing_for: float = 0.0
    resolved_retention: float = 900.0


def step(alert: Alert | None, active: bool, ts: float, timing: Timing) -> Alert | None:
    """Advance one instance by one evaluation at `ts` (a new active one comes in pending)."""
    if active:
        return _active(alert, ts, timing)
    if alert is None or alert.state == "pending":
        return None  # a pending alert that stops holding is forgotten, never sent
    if alert.state == "firing":
        if alert.keep_firing_since is None:
            alert.keep_firing_since = ts
        if ts - alert.keep_firing_since < timing.keep_firing_for:
            return alert
        alert.state, alert.resolved_at = "resolved", ts
        return alert
    assert alert.resolved_at is not None
    # Resolved alerts are kept for a while so the resolve notice survives an outage.
    return None if ts - alert.resolved_at >= timing.resolved_retention else alert


def _active(alert: Alert | None, ts: float, timing: Timing) -> Alert:
    assert alert is not None
    if alert.state == "resolved":
        alert.state, alert.active_at = "pending", ts
        alert.fired_at = alert.resolved_at = None
    alert.keep_firing_since = None
    if alert.state == "pending" and ts - alert.active_at >= timing.hold:
        alert.state, alert.fired_at = "firing", ts
    return alert
