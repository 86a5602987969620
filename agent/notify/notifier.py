"""Delivery for the life of the process: alert log, muting, dispatcher, outbox, senders.

Everything here that writes (the alert log, the outbox, the nflog) runs on the notifier's own
thread: the engine only puts its snapshots on the notifier's queue, and a reload hands over its
new senders the same way, so neither ever waits for a disk or a receiver.
"""

from __future__ import annotations

import functools
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable

from agent.alerting.engine import Transition
from agent.alerting.state import Alert, State
from agent.backends import BACKENDS
from agent.config import Config
from agent.config.notify import NotifyConfig, ReceiverConfig
from agent.files import JsonLinesLog
from agent.notify import channels, levels
from agent.notify.channels.base import read_secret
from agent.notify.dispatch import Dispatcher, Route, build_routes
from agent.notify.figures import METRICS, figures
from agent.notify.inhibit import DEFAULTS, InhibitRule, inhibited, outranked
from agent.notify.outbox import Outbox, OutboxWriteError
from agent.notify.payload import Notice, notice
from agent.notify.receivers import patience, policy
from agent.notify.sender import Sender, targets
from agent.notify.silences import Silence, SilenceStore
from agent.secrets import SECRETS, url_secrets
from agent.store import Labels, Sample
from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)

Work = Callable[[], None]
HANDOVER = 10.0  # seconds a reload waits for the notifier's thread to take a new configuration
# The round's notify sampler asks for each tick; the thread ticks on its own only if no round
# asked for this long (sampling slower than that, or the round loop held up). A thread woken
# by its own timer cost four times one woken by a queued tick (75-130 against 25 us of CPU).
TICK_EVERY = 1.5


class Notifier:
    """The engine's delivery queue (`submit`), worked through on the notifier's own thread.

    The thread delivers each snapshot, and after every round (at least every TICK_EVERY
    seconds) flushes what the timers make due (group_interval, repeat_interval, silences that
    ended) and reads the outbox's figures.
    """

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
        self.latest: list[Alert] | None = None  # the engine's newest snapshot, for the tick
        self._queued: list[tuple[Labels, State]] | None = None  # the shape last queued
        self._shape: list[tuple[Labels, State]] | None = None  # instances and states last flushed
        self.muted: dict[Labels, str] = {}  # why an instance is not notified
        self._muted_from: tuple[object, list[Silence]] | None = None  # the shape and silences
        self._receivers: list[ReceiverConfig] | None = None
        self._keys: list[bytes | None] = []  # the receivers' secrets as last read
        self._notify: NotifyConfig | None = None
        self.node, self.external_url = "", ""
        self.inhibit_rules: list[InhibitRule] = []
        self.alert_log: JsonLinesLog | None = None
        self._figures: list[Sample] = []  # the outbox's figures, read by the last tick
        self._inbox: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._asked = False  # a tick the round asked for waits in the inbox
        self._secret: set[str] = set()  # the receivers' URL secrets

    def start(self) -> None:
        """Start the notifier's thread."""
        self._thread = threading.Thread(target=SUPERVISOR.run, name="notifier", daemon=True,
                                        args=("notifier", self._serve, self._stopping))  # fmt: skip
        self._thread.start()

    def _serve(self) -> None:
        """Do what is queued; tick when the round asks, or TICK_EVERY seconds after the last."""
        due = time.time()
        while not self._stopping.is_set():
            try:
                work = self._inbox.get(timeout=max(0.0, due - time.time()))
            except queue.Empty:
                work = None
            if work is None and self._stopping.is_set():
                return
            if work is not None and work is not _asked_tick:
                work()
            now = time.time()
            if work is _asked_tick or now >= due:
                self._asked = False
                self.tick(now)
                due = now + TICK_EVERY

    def _do(self, work: Work) -> None:
        """Run `work` on the notifier's thread and wait for it (here, before the thread runs)."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            work()
            return
        done = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                done.set()

        self._inbox.put(run)
        if not done.wait(HANDOVER):  # its thread is held up (a hung disk): it applies later
            log.warning("the notifier is busy; the new configuration takes effect when it is free")

    def configure(self, cfg: Config) -> None:
        """Take new receivers, routes and inhibit rules; what was sent is kept.

        The senders are replaced when the receivers, the notify section or a secret file's
        contents changed; a receiver whose secret cannot be read raises OSError before anything
        is swapped. Nothing waits for an old sender: its successor does, on its own thread.
        """
        keys = [read_secret(r) for r in cfg.receivers]  # a rotated file is a change too
        senders = None
        if cfg.receivers != self._receivers or cfg.notify != self._notify or keys != self._keys:
            senders = [
                Sender(self.outbox, target, channels.build(r, url), r.timeout,
                       self.counts, policy=policy(r, cfg.notify))
                for r in cfg.receivers for target, url in targets(r)
            ]  # fmt: skip
        routes = build_routes(cfg.routes, cfg.receivers)
        allowed = patience(routes, cfg.receivers)
        for sender in self.senders if senders is None else senders:
            BACKENDS.declare(sender.backend, "receiver", allowed[sender.target.receiver])
        rules = [InhibitRule.from_config(c) for c in cfg.inhibit_rules]
        self._do(functools.partial(self._apply, cfg, routes, rules, senders, keys))

    def _apply(self, cfg: Config, routes: list[Route], rules: list[InhibitRule],
               senders: list[Sender] | None, keys: list[bytes | None]) -> None:  # fmt: skip
        """Swap a checked configuration in (on the notifier's thread)."""
        state, notify = cfg.agent.state_dir, cfg.notify
        self.node, self.external_url = cfg.agent.node_name, notify.external_url
        self.inhibit_rules = rules + (list(DEFAULTS) if notify.default_inhibit else [])
        self._muted_from = None  # new rules or node name: mutes are worked out again
        self.alert_log = JsonLinesLog(state / "alerts.log", notify.alert_log_max_bytes)
        self.dispatcher.configure(routes, cfg.receivers, notify.external_url,
                                  notify.resend_delay, notify.levels == "one")  # fmt: skip
        if senders is None:
            return
        secret = {part for r in cfg.receivers for url in r.targets()
                  for part in url_secrets(url)}  # fmt: skip
        SECRETS.set("receivers:old", self._secret)  # old senders may be in their last try
        SECRETS.set("receivers", secret)  # before the new senders' first try
        self._secret = secret
        self._swap_senders(senders)
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
        """Stop the old senders and start the new ones, waiting for nothing.

        Each new sender first waits, on its own thread, for the old sender of its URL to end
        its try in flight, so nothing is sent twice.
        """
        old = {s.receiver: s for s in self.senders}
        for sender in self.senders:
            sender.stop()
        self.senders = senders
        for sender in senders:
            sender.start(after=old.get(sender.receiver))

    def submit(self, alerts: list[Alert], transitions: list[Transition], now: float) -> None:
        """Queue the engine's snapshot for the notifier's thread (the engine's callback).

        Most of a round's groups change nothing: a snapshot without transitions, of the same
        instances in the same states as the last one queued, is only kept for the next tick.
        """
        self.latest = alerts
        shape = [(a.labels, a.state) for a in alerts]
        if transitions or shape != self._queued:
            self._queued = shape
            self._inbox.put(functools.partial(self.deliver, alerts, transitions, now))

    def deliver(self, alerts: list[Alert], transitions: list[Transition], now: float) -> None:
        """Take a snapshot after an evaluation: log transitions, queue what is due.

        A snapshot with the same instances in the same states as the last one (most of a
        round's groups change nothing) is only kept: what its timers make due (group_interval,
        repeat_interval), the once-a-second `tick` queues.
        """
        shape = [(a.labels, a.state) for a in alerts]
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
        notices = [notice(a, self.node, self.external_url) for a in shown]
        keep: list[Notice] = [
            n for a, n in zip(shown, notices, strict=True) if a.labels not in self.muted
        ]
        self.dispatcher.flush(keep, now, present=levels.known(notices))

    def tick(self, now: float) -> None:
        """Flush what the timers made due (a silence may have come or gone); read the outbox."""
        if self.latest is not None:
            self.alerts = self.latest
        alerts = self.alerts or []
        self.muted = self._mutes(alerts, now)
        self._flush(now)
        shown = [a for a in alerts if a.state != "pending"]
        suppressed = sum(1 for a in shown if a.labels in self.muted)
        stats: dict[str, tuple[int, float]] = {}
        try:
            if self.senders:  # no receiver, no figures to read
                stats = self.outbox.stats()
        except sqlite3.Error as exc:  # a damaged or vanished database: said by its next write
            log.debug("outbox figures unread: %s", exc)
        self._figures = figures(self.senders, self.counts, stats, suppressed,
                                self.outbox.write_failures)  # fmt: skip

    def sample(self, now: float) -> list[Sample]:
        """Report the figures the notifier's last tick read (no disk read on the round).

        And ask the thread for the next tick: one at a time, so a thread held up (a hung disk)
        finds one waiting, not one per round.
        """
        if self._thread is not None and not self._asked:
            self._asked = True
            self._inbox.put(_asked_tick)
        return self._figures

    def close(self) -> None:
        """Stop the thread and the senders; what is still queued stays in the outbox."""
        self._stopping.set()
        self._inbox.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for sender in self.senders:
            sender.stop()
        self.senders = []


def _asked_tick() -> None:
    """Stands in the inbox for a tick the round asked for (the thread ticks instead)."""


def _same(old: list[Silence], new: list[Silence]) -> bool:
    """Return True if both lists hold the very same silences (a file re-read makes new ones)."""
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))
