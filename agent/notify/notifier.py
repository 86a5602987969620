"""Delivery for the life of the process: alert log, muting, dispatcher, outbox, senders."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from agent.alerting.engine import Transition
from agent.alerting.state import Alert, State
from agent.backends import BACKENDS
from agent.config import Config
from agent.config.notify import NotifyConfig, ReceiverConfig
from agent.files import JsonLinesLog
from agent.notify import channels, levels
from agent.notify.channels.base import read_secret
from agent.notify.dispatch import Dispatcher, Route, build_routes
from agent.notify.inhibit import DEFAULTS, InhibitRule, inhibited, outranked
from agent.notify.outbox import Outbox, OutboxWriteError
from agent.notify.payload import alert_dict
from agent.notify.sender import Policy, Sender
from agent.notify.silences import Silence, SilenceStore
from agent.secrets import SECRETS, url_secrets
from agent.store import Labels, MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_outbox_pending": MetricInfo("gauge", "Notifications waiting in the outbox."),
    "dsagent_outbox_oldest_seconds": MetricInfo("gauge", "Age of the oldest waiting notification."),
    "dsagent_notifications_sent_total": MetricInfo("counter", "Notifications delivered (2xx)."),
    "dsagent_notifications_failed_total": MetricInfo("counter", "Delivery attempts that failed."),
    "dsagent_alerts_suppressed": MetricInfo("gauge", "Alerts not notified: silenced or inhibited."),
    "dsagent_outbox_write_failures_total": MetricInfo(
        "counter", "Outbox writes that failed (disk full, I/O error) and are tried again."
    ),
    "dsagent_notifications_dropped_total": MetricInfo(
        "counter", "Queued notifications dropped past the queue's bounds (expired, overflow)."
    ),
}


def policy(receiver: ReceiverConfig, notify: NotifyConfig) -> Policy:
    """Return how a receiver's queue is kept; Alertmanager takes each alert's current state."""
    return Policy(receiver.queue_max, receiver.queue_max_age, receiver.stale_after,
                  current_state=receiver.type == "alertmanager",
                  ends_in=4 * notify.resend_delay)  # fmt: skip


def patience(routes: list[Route], receivers: list[ReceiverConfig]) -> dict[str, float]:
    """Return per receiver how long it may fail before it is overdue: its longest group_interval."""
    allowed = {r.name: 0.0 for r in receivers}
    for route in routes:
        name = route.cfg.receiver
        allowed[name] = max(allowed.get(name, 0.0), route.cfg.group_interval)
    return {name: value or 60.0 for name, value in allowed.items()}


class Notifier:
    """The engine's one delivery callback (`deliver`), and a scheduler job for the timers."""

    name = "notify"
    metrics = METRICS

    def __init__(self, outbox: Outbox, silences: SilenceStore) -> None:
        self.outbox, self.silences = outbox, silences
        self.dispatcher = Dispatcher(outbox)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.senders: list[Sender] = []
        # The engine's latest snapshot; None until its first evaluation: before that, what was
        # notified as firing must not look gone (after a restart it is being restored).
        self.alerts: list[Alert] | None = None
        self._shape: list[tuple[Labels, State]] | None = None  # instances and states last flushed
        self.muted: dict[Labels, str] = {}  # why an instance is not notified
        self._muted_from: tuple[object, list[Silence]] | None = None  # the shape and silences
        self._receivers: list[ReceiverConfig] | None = None
        self._keys: list[bytes | None] = []  # the receivers' secrets as last read
        self._notify: NotifyConfig | None = None
        self._lock = threading.RLock()
        self.node, self.external_url = "", ""
        self.inhibit_rules: list[InhibitRule] = []
        self.alert_log: JsonLinesLog | None = None

    def configure(self, cfg: Config) -> None:
        """Take new receivers, routes and inhibit rules; what was sent is kept.

        The senders are replaced when the receivers, or a secret file's contents, changed; a
        receiver whose secret cannot be read raises OSError before anything is swapped.
        """
        senders = None
        keys = [read_secret(r) for r in cfg.receivers]  # a rotated file is a change too
        if cfg.receivers != self._receivers or cfg.notify != self._notify or keys != self._keys:
            senders = [
                Sender(self.outbox, f"{r.name}#{i}", channels.build(r, url), r.timeout,
                       self.counts, policy=policy(r, cfg.notify))
                for r in cfg.receivers for i, url in enumerate(r.targets())
            ]  # fmt: skip
        routes = build_routes(cfg.routes, cfg.receivers)
        allowed = patience(routes, cfg.receivers)
        for sender in self.senders if senders is None else senders:
            BACKENDS.declare(sender.backend, "receiver", allowed[sender.receiver.rsplit("#", 1)[0]])
        rules = [InhibitRule.from_config(c) for c in cfg.inhibit_rules]
        state, notify = cfg.agent.state_dir, cfg.notify
        with self._lock:
            self.node, self.external_url = cfg.agent.node_name, notify.external_url
            self.inhibit_rules = rules + (list(DEFAULTS) if notify.default_inhibit else [])
            self._muted_from = None  # new rules or node name: mutes are worked out again
            self.alert_log = JsonLinesLog(state / "alerts.log", notify.alert_log_max_bytes)
            self.dispatcher.configure(routes, cfg.receivers, notify.external_url,
                                      notify.resend_delay, notify.levels == "one")  # fmt: skip
            if senders is not None:
                secret = {part for r in cfg.receivers for url in r.targets()
                          for part in url_secrets(url)}  # fmt: skip
                SECRETS.set("receivers:new", secret)  # before the new senders' first try
                self._swap_senders(senders)  # the old ones are done once it returns
                SECRETS.set("receivers", secret)
                SECRETS.set("receivers:new", ())
                self._receivers, self._notify, self._keys = list(cfg.receivers), cfg.notify, keys
                BACKENDS.forget({s.backend for s in senders}, "receiver")
                self._drop_orphans({s.receiver for s in senders})

    def _drop_orphans(self, live: set[str]) -> None:
        """Drop what is queued for receiver URLs no longer configured: nothing would send it.

        Kept, it would wait in the outbox (and the admin API's list) for ever, or page whoever
        gets the name next, with alerts hours old.
        """
        try:
            gone = self.outbox.forget(live)
        except OutboxWriteError:  # said by the outbox; they are dropped at the next reload
            return
        for receiver, count in sorted(gone.items()):
            log.warning("receiver %s is no longer configured: %d queued notification(s) dropped",
                        receiver, count)  # fmt: skip

    def _swap_senders(self, senders: list[Sender]) -> None:
        """Stop the old senders (a try in flight finishes first), then start the new ones."""
        for old in self.senders:
            old.stop()
        for old in self.senders:
            old.join(timeout=old.timeout + 1)
        self.senders = senders
        for sender in senders:
            sender.start()

    def deliver(self, alerts: list[Alert], transitions: list[Transition], now: float) -> None:
        """Take the engine's snapshot after an evaluation: log transitions, queue what is due.

        A snapshot with the same instances in the same states as the last one (most of a
        round's groups change nothing) is only kept: what its timers make due (group_interval,
        repeat_interval), the once-a-second flush in `sample` queues.
        """
        shape = [(a.labels, a.state) for a in alerts]
        with self._lock:
            self.alerts = alerts
            if not transitions and shape == self._shape:
                return
            self._shape = shape
            self.muted = self._mutes(alerts, now)
            for alert, before in transitions:
                self._log(alert, before, now)
            self._flush(now)

    def _mutes(self, alerts: list[Alert], now: float) -> dict[Labels, str]:
        """Return why each muted instance is muted: inhibited, or the silence's id.

        Mutes follow from the instances' labels and states (`_shape`, replaced whenever they
        change), the active silences and the configuration: every round asks, and while none
        of them changed the answer is the one worked out last.
        """
        silences = self.silences.active(now)  # once per evaluation, not once per alert
        last = self._muted_from
        if last is not None and last[0] is self._shape and _same(last[1], silences):
            return self.muted
        self._muted_from = self._shape, silences
        maps = {a.labels: {**dict(a.labels), "node": self.node} for a in alerts}
        firing = [maps[a.labels] for a in alerts if a.state == "firing"]
        below = outranked(alerts)
        muted = {}
        for a in alerts:
            labels = maps[a.labels]
            if a.labels in below or inhibited(labels, firing, self.inhibit_rules):
                muted[a.labels] = "inhibited"
            elif silence := next((s for s in silences if s.matches(labels)), None):
                muted[a.labels] = f"silenced by {silence.id}"
        return muted

    def _log(self, alert: Alert, before: str, now: float) -> None:
        """Record a transition in the alert log, muted or not."""
        if self.alert_log is None:
            return
        labels = {**dict(alert.labels), "node": self.node}
        why = self.muted.get(alert.labels, "")
        self.alert_log.write({
            "alertname": labels.get("alertname"), "state": alert.state, "previous": before,
            "severity": alert.severity, "labels": labels, "annotations": alert.annotations,
            "value": alert.value, "active_at": alert.active_at, "node": self.node,
            "inhibited": why == "inhibited",
            "silenced_by": why.removeprefix("silenced by ") if why.startswith("silenced") else None,
        }, now)  # fmt: skip

    def _flush(self, now: float) -> None:
        """Queue the notifications that are due (none without a receiver to send them to)."""
        if self.alerts is None or not self.dispatcher.receivers:
            return
        shown = [a for a in self.alerts if a.state != "pending"]
        dicts = [alert_dict(a, self.node, self.external_url) for a in shown]
        keep: list[dict[str, Any]] = [
            d for a, d in zip(shown, dicts, strict=True) if a.labels not in self.muted
        ]
        self.dispatcher.flush(keep, now, present=levels.known(dicts))

    def sample(self, now: float) -> Iterator[Sample]:
        """Flush (for group_interval and repeat timers), then report the outbox."""
        with self._lock:
            alerts = self.alerts or []
            self.muted = self._mutes(alerts, now)  # a silence may have come or gone
            self._flush(now)
            shown = [a for a in alerts if a.state != "pending"]
            suppressed = sum(1 for a in shown if a.labels in self.muted)
            senders = list(self.senders)
        stats = self.outbox.stats()
        for sender in senders:
            rid = sender.receiver
            pending, oldest = stats.get(rid, (0, 0.0))
            yield sample("dsagent_outbox_pending", pending, receiver=rid)
            yield sample("dsagent_outbox_oldest_seconds", oldest, receiver=rid)
            yield sample("dsagent_notifications_sent_total", self.counts[(rid, "sent")],
                         receiver=rid)  # fmt: skip
            yield sample("dsagent_notifications_failed_total", self.counts[(rid, "failed")],
                         receiver=rid)  # fmt: skip
            for reason in ("expired", "overflow"):
                yield sample("dsagent_notifications_dropped_total",
                             self.counts[(rid, f"dropped_{reason}")], receiver=rid,
                             reason=reason)  # fmt: skip
        yield sample("dsagent_alerts_suppressed", suppressed)
        yield sample("dsagent_outbox_write_failures_total", self.outbox.write_failures)

    def close(self) -> None:
        """Stop the senders; what is still queued stays in the outbox for the next start."""
        with self._lock:
            self._swap_senders([])


def _same(old: list[Silence], new: list[Silence]) -> bool:
    """Return True if both lists hold the very same silences (a file re-read makes new ones)."""
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))
