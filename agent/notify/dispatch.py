"""Routing and grouping as Alertmanager does them, feeding the outbox; what was sent is durable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config.notify import ReceiverConfig, RouteConfig
from agent.matchers import Matcher, parse_matchers
from agent.notify import levels
from agent.notify.outbox import Outbox, OutboxWriteError
from agent.notify.payload import Notice, rfc3339, webhook_v4
from agent.notify.sender import targets

ByKey = dict[str, list[Notice]]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """A route with its matchers parsed and an id that survives reloads while it is unchanged."""

    id: str
    cfg: RouteConfig
    matchers: tuple[Matcher, ...]


def build_routes(routes: Sequence[RouteConfig], receivers: Sequence[ReceiverConfig]) -> list[Route]:
    """Parse the routes; with none, every alert goes to every receiver with group_wait 0."""
    if not routes:
        routes = [RouteConfig.model_validate({"receiver": r.name, "continue": True})
                  for r in receivers]  # fmt: skip
    out = []
    for i, r in enumerate(routes):
        text = json.dumps([r.model_dump(mode="json", by_alias=True), routes[:i].count(r)])
        rid = hashlib.sha256(text.encode()).hexdigest()[:12]
        out.append(Route(rid, r, tuple(m for t in r.matchers for m in parse_matchers(t))))
    return out


def matching(routes: Sequence[Route], labels: Mapping[str, str]) -> list[Route]:
    """Return the routes an alert takes: in order, stopping at a match without continue."""
    out = []
    for route in routes:
        if all(m.matches(labels) for m in route.matchers):
            out.append(route)
            if not route.cfg.continue_:
                break
    return out


@dataclass
class GroupState:
    """What an aggregation group last sent, and when: Alertmanager's notification log entry."""

    key: str  # receiver/route id/group labels: Alertmanager's group key, stable across reloads
    route: str
    labels: dict[str, str]
    first_seen: float
    last_sent: float | None = None
    sent: frozenset[tuple[str, str]] = frozenset()  # (fingerprint, status) last notified
    fired: dict[str, Notice] = field(default_factory=dict)  # notified firing, not resolved

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return {"route": self.route, "labels": self.labels, "first_seen": self.first_seen,
                "last_sent": self.last_sent, "sent": sorted(self.sent),
                "fired": {fp: n.json() for fp, n in self.fired.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, key: str, data: Mapping[str, Any]) -> GroupState:
        """Read the stored form."""
        return cls(key, str(data["route"]), dict(data["labels"]), float(data["first_seen"]),
                   data["last_sent"], frozenset((str(f), str(s)) for f, s in data["sent"]),
                   {str(fp): Notice.from_json(n) for fp, n in data["fired"].items()})  # fmt: skip


def due(state: GroupState, current: frozenset[tuple[str, str]], firing: bool, cfg: RouteConfig,
        now: float) -> bool:  # fmt: skip
    """Return True if the group should notify now (group_wait, group_interval, repeat)."""
    if state.last_sent is None:
        return now >= state.first_seen + cfg.group_wait
    if current != state.sent:
        return now >= state.last_sent + cfg.group_interval
    return firing and now >= state.last_sent + cfg.repeat_interval


def restore_groups(outbox: Outbox) -> dict[str, GroupState]:
    """Read the notification log; a damaged entry is skipped (its group starts afresh)."""
    groups, bad = {}, 0
    for key, data in outbox.load_groups().items():
        try:
            groups[key] = GroupState.from_json(key, data)
        except (KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    if bad:
        log.error("notification log: %d damaged group(s) skipped; they may notify once more", bad)
    return groups


def key_of(*parts: object) -> str:
    """Return a stable idempotency key for a notification."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Dispatcher:
    """Turns the current alerts into notifications in the outbox; one for the process."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.routes: list[Route] = []
        self.receivers: dict[str, ReceiverConfig] = {}
        self.external_url, self.resend_delay = "", 60.0
        # Restored: a restart neither repeats what was sent nor forgets a resolve that is owed.
        self.groups = restore_groups(outbox)
        self.am_sent: dict[str, float] = {}  # fingerprint+status -> last sent to Alertmanager
        self.one_per_rule = True  # notify.levels = "one"

    def configure(self, routes: list[Route], receivers: Sequence[ReceiverConfig],
                  external_url: str, resend_delay: float,
                  one_per_rule: bool = True) -> None:  # fmt: skip
        """Take new routes and receivers; groups of unchanged routes keep what they sent."""
        self.routes, self.receivers = routes, {r.name: r for r in receivers}
        self.external_url, self.resend_delay = external_url, resend_delay
        self.one_per_rule = one_per_rule

    def flush(self, alerts: Sequence[Notice], now: float,
              present: Collection[str] | None = None) -> int:  # fmt: skip
        """Route and group the alerts; queue what is due; return notifications queued.

        `alerts` are the ones to notify (muted ones left out); `present` holds the fingerprint
        of every alert that still exists, muted or not (and, for one alert per rule, of its
        labels without severity): one notified as firing that is no longer there (its rule was
        removed or changed) is sent as resolved. Alertmanager receivers get every level: it
        inhibits by itself.
        """
        grouped, to_am = self._route(alerts, now)
        there = levels.known(alerts) if present is None else set(present)
        routes = {r.id: r for r in self.routes}
        queued = 0
        for key, state in list(self.groups.items()):
            taken = routes.get(state.route)
            try:
                if taken is None or taken.cfg.receiver not in self.receivers:
                    self._forget(key)  # its route was removed by a reload
                    continue
                queued += self._group(taken, state, grouped.get(key, []), there, now)
            except OutboxWriteError:
                continue  # counted and logged by the outbox; the group is unchanged: next flush
        present_am = {a.fingerprint + a.status for items in to_am.values() for a in items}
        self.am_sent = {k: v for k, v in self.am_sent.items() if k in present_am}
        for name, items in to_am.items():
            try:
                queued += self._alertmanager(name, items, now)
            except OutboxWriteError:
                continue
        return queued

    def _route(self, alerts: Sequence[Notice], now: float) -> tuple[ByKey, ByKey]:
        """Return the alerts by aggregation group key, and by Alertmanager receiver."""
        grouped: ByKey = {}
        to_am: ByKey = {}
        for alert in alerts:
            for route in matching(self.routes, alert.labels):
                if self.receivers[route.cfg.receiver].type == "alertmanager":
                    to_am.setdefault(route.cfg.receiver, []).append(alert)
        for alert in levels.one_per_rule(alerts) if self.one_per_rule else alerts:
            for route in matching(self.routes, alert.labels):
                if self.receivers[route.cfg.receiver].type == "alertmanager":
                    continue
                glabels = {k: alert.labels.get(k, "") for k in route.cfg.group_by}
                key = f"{route.cfg.receiver}/{route.id}/{json.dumps(glabels, sort_keys=True)}"
                if key not in self.groups:
                    self.groups[key] = GroupState(key, route.id, glabels, first_seen=now)
                grouped.setdefault(key, []).append(alert)
        return grouped, to_am

    def _group(self, route: Route, state: GroupState, alerts: list[Notice], present: set[str],
               now: float) -> int:  # fmt: skip
        firing, resolved = self._split(route, state, alerts, present, now)
        send = firing + resolved
        current = frozenset((a.fingerprint, self._status(a)) for a in send)
        if not send or not due(state, current, bool(firing), route.cfg, now):
            if not alerts and not state.fired:
                self._forget(state.key)
            return 0
        receiver = self.receivers[route.cfg.receiver]
        payload = webhook_v4(receiver.name, state.key, state.labels, send, self.external_url)
        # A delivered resolve leaves the group, as in Alertmanager: only firing ones are remembered.
        ended = {r.fingerprint for r in resolved}
        fired = {fp: a for fp, a in state.fired.items() if fp not in ended}
        fired.update((a.fingerprint, a) for a in firing)
        sent = frozenset(x for x in current if x[1].startswith("firing"))
        after = dataclasses.replace(state, last_sent=now, sent=sent, fired=fired)
        ident = key_of(receiver.name, state.key, now, sorted(current))
        keep = after.to_json() if (alerts or after.fired) else None
        # The group changes only once its notification is in the outbox: a failed write leaves
        # it as it was, so the next flush queues the same change again (Alertmanager writes its
        # nflog after the send, for the same reason).
        self.outbox.commit(self._targets(receiver, payload, ident), {state.key: keep})
        if keep is None:
            del self.groups[state.key]
        else:
            self.groups[state.key] = after
        return 1

    def _split(self, route: Route, state: GroupState, alerts: list[Notice], present: set[str],
               now: float) -> tuple[list[Notice], list[Notice]]:  # fmt: skip
        """Return a group's firing alerts and the resolves it owes."""
        firing = [a for a in alerts if a.status == "firing"]
        # Only what on-call saw firing gets a resolve (an inhibited warning never fired for them).
        owed = state.fired
        resolved = [a for a in alerts if a.status == "resolved" and a.fingerprint in owed]
        resolved += [dataclasses.replace(n, status="resolved", ends_at=rfc3339(now))
                     for fp, n in state.fired.items() if fp not in present]  # fmt: skip
        if not route.cfg.send_resolved:
            for a in resolved:  # owed nothing: the group forgets them without a notification
                state.fired.pop(a.fingerprint, None)
            resolved = []
        if self.one_per_rule:  # a level that moved is an update, marked as such; a resolve
            # names the level last notified (every resolve here is owed)
            firing = [self._marked(a, owed.get(a.fingerprint)) for a in firing]
            resolved = [dataclasses.replace(a, labels=owed[a.fingerprint].labels)
                        for a in resolved]  # fmt: skip
        return firing, resolved

    def _status(self, alert: Notice) -> str:
        """Return what a group remembers sending: with one alert per rule, a firing level too."""
        if self.one_per_rule and alert.status == "firing":
            return f"firing:{alert.severity()}"
        return alert.status

    @staticmethod
    def _marked(alert: Notice, before: Notice | None) -> Notice:
        moved = levels.transition(before, alert)
        if not moved:
            return alert
        return dataclasses.replace(alert, annotations={**alert.annotations, "transition": moved})

    def _forget(self, key: str) -> None:
        if self.groups[key].last_sent is not None:
            self.outbox.commit([], {key: None})
        del self.groups[key]

    def _alertmanager(self, name: str, alerts: list[Notice], now: float) -> int:
        """Queue firing alerts every resend_delay and a resolve once, coalesced per alert.

        Only each alert's latest state waits in the queue; the sender gives a firing one its
        endsAt when it sends, so an outage never replays a stale state (a false resolve).
        """
        send = []
        for a in alerts:
            last = self.am_sent.get(a.fingerprint + a.status)
            if last is not None and (a.status == "resolved" or now - last < self.resend_delay):
                continue
            send.append(a)
        receiver = self.receivers[name]
        ids = [target.id for target, _ in targets(receiver)]
        self.outbox.upsert([(rid, f"am/{rid}/{a.fingerprint}", a.json())
                            for rid in ids for a in send])  # fmt: skip
        self.am_sent.update((a.fingerprint + a.status, now) for a in send)  # once queued
        return len(send)

    @staticmethod
    def _targets(receiver: ReceiverConfig, payload: dict[str, Any],
                 key: str) -> list[tuple[str, str, dict[str, Any]]]:  # fmt: skip
        return [(target.id, f"{key}#{target.index}", payload)
                for target, _ in targets(receiver)]  # fmt: skip
