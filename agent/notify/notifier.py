"""Wires delivery together: engine transitions -> alert log; alerts -> dispatcher -> outbox."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from agent.alerting.engine import RuleEngine
from agent.alerting.state import Alert
from agent.config import Config
from agent.jsonlog import JsonLinesLog
from agent.notify import channels
from agent.notify.dispatch import Dispatcher, build_routes
from agent.notify.inhibit import DEFAULTS, InhibitRule, inhibited
from agent.notify.outbox import Outbox
from agent.notify.payload import alert_dict
from agent.notify.sender import Sender
from agent.notify.silences import SilenceStore
from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_outbox_pending": MetricInfo("gauge", "Notifications waiting in the outbox."),
    "dsagent_outbox_oldest_seconds": MetricInfo("gauge", "Age of the oldest waiting notification."),
    "dsagent_notifications_sent_total": MetricInfo("counter", "Notifications delivered (2xx)."),
    "dsagent_notifications_failed_total": MetricInfo("counter", "Delivery attempts that failed."),
    "dsagent_alerts_suppressed": MetricInfo("gauge", "Alerts not notified: silenced or inhibited."),
}


class Notifier:
    """Runs as a scheduler job (group timers, repeats) and right after each rule evaluation."""

    name = "notify"
    metrics = METRICS

    def __init__(self, cfg: Config, engine: RuleEngine) -> None:
        state = cfg.agent.state_dir
        self.engine, self.node = engine, cfg.agent.node_name
        self.external_url = cfg.notify.external_url
        self.outbox = Outbox(state / "outbox.db")
        self.silences = SilenceStore(state)
        self.alert_log = JsonLinesLog(state / "alerts.log", cfg.notify.alert_log_max_bytes)
        self.inhibit_rules = [InhibitRule.from_config(c) for c in cfg.inhibit_rules]
        if cfg.notify.default_inhibit:
            self.inhibit_rules += DEFAULTS
        routes = build_routes(cfg.routes, cfg.receivers)
        self.dispatcher = Dispatcher(routes, cfg.receivers, self.outbox, self.external_url,
                                     cfg.notify.resend_delay)  # fmt: skip
        self.counts: Counter[tuple[str, str]] = Counter()
        self.senders = [
            Sender(self.outbox, f"{r.name}#{i}", channels.build(r, url), r.timeout, self.counts)
            for r in cfg.receivers for i, url in enumerate(r.targets())
        ]  # fmt: skip
        self.suppressed = 0
        self._lock = threading.Lock()
        engine.listeners.append(self.on_transition)
        engine.after_eval.append(self.flush)

    def start(self) -> None:
        """Start one sender per receiver URL."""
        for sender in self.senders:
            sender.start()

    def on_transition(self, alert: Alert, before: str) -> None:
        """Record every transition in the alert log, silenced or not."""
        labels = {**dict(alert.labels), "node": self.node}
        silence = self.silences.silencing(labels, time.time())
        self.alert_log.write({
            "alertname": labels.get("alertname"), "state": alert.state, "previous": before,
            "severity": alert.severity, "labels": labels, "annotations": alert.annotations,
            "value": alert.value, "active_at": alert.active_at, "node": self.node,
            "inhibited": alert.inhibited, "silenced_by": silence.id if silence else None,
        }, time.time())  # fmt: skip

    def flush(self, now: float) -> None:
        """Queue the notifications that are due."""
        with self._lock:
            alerts = [a for a in self.engine.all_alerts() if a.state != "pending"]
            dicts = [alert_dict(a, self.node, self.external_url) for a in alerts]
            firing = [d["labels"] for d in dicts if d["status"] == "firing"]
            silences = self.silences.active(now)  # once per flush, not once per alert
            keep: list[dict[str, Any]] = []
            for alert, d in zip(alerts, dicts, strict=True):
                muted = (alert.inhibited or inhibited(d["labels"], firing, self.inhibit_rules)
                         or any(s.matches(d["labels"]) for s in silences))  # fmt: skip
                if not muted:
                    keep.append(d)
            self.suppressed = len(dicts) - len(keep)
            self.dispatcher.flush(keep, now)

    def sample(self, now: float) -> Iterator[Sample]:
        """Flush (for group_interval and repeat timers), then report the outbox."""
        self.flush(now)
        stats = self.outbox.stats()
        for sender in self.senders:
            pending, oldest = stats.get(sender.receiver, (0, 0.0))
            rid = sender.receiver
            yield sample("dsagent_outbox_pending", pending, receiver=rid)
            yield sample("dsagent_outbox_oldest_seconds", oldest, receiver=rid)
            yield sample(
                "dsagent_notifications_sent_total", self.counts[(rid, "sent")], receiver=rid
            )
            yield sample("dsagent_notifications_failed_total", self.counts[(rid, "failed")],
                         receiver=rid)  # fmt: skip
        yield sample("dsagent_alerts_suppressed", self.suppressed)

    def close(self) -> None:
        """Stop the senders; what is still queued stays in the outbox for the next start."""
        if self.on_transition in self.engine.listeners:
            self.engine.listeners.remove(self.on_transition)
        if self.flush in self.engine.after_eval:
            self.engine.after_eval.remove(self.flush)
        for sender in self.senders:
            sender.stop()
        for sender in self.senders:
            sender.join(timeout=2)
