"""Routing and grouping as Alertmanager does them, feeding the outbox."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config_notify import ReceiverConfig, RouteConfig
from agent.matchers import Matcher, parse_matchers
from agent.notify.outbox import Outbox
from agent.notify.payload import rfc3339, webhook_v4

Labels = Mapping[str, str]
AlertDict = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """A route with its matchers parsed."""

    index: int
    cfg: RouteConfig
    matchers: tuple[Matcher, ...]


def build_routes(routes: Sequence[RouteConfig], receivers: Sequence[ReceiverConfig]) -> list[Route]:
    """Parse the routes; with none, every alert goes to every receiver with group_wait 0."""
    if not routes:
        routes = [RouteConfig.model_validate({"receiver": r.name, "continue": True})
                  for r in receivers]  # fmt: skip
    return [Route(i, r, tuple(m for t in r.matchers for m in parse_matchers(t)))
            for i, r in enumerate(routes)]  # fmt: skip


def matching(routes: Sequence[Route], labels: Labels) -> list[Route]:
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
    """What an aggregation group last sent, and when."""

    first_seen: float
    last_sent: float | None = None
    sent: frozenset[tuple[str, str]] = frozenset()
    resolved_sent: set[str] = field(default_factory=set)
    fired: set[str] = field(default_factory=set)  # fingerprints ever sent as firing


def due(state: GroupState, current: frozenset[tuple[str, str]], firing: bool, cfg: RouteConfig,
        now: float) -> bool:  # fmt: skip
    """Return True if the group should notify now (group_wait, group_interval, repeat)."""
    if state.last_sent is None:
        return now >= state.first_seen + cfg.group_wait
    if current != state.sent:
        return now >= state.last_sent + cfg.group_interval
    return firing and now >= state.last_sent + cfg.repeat_interval


def key_of(*parts: object) -> str:
    """Return a stable idempotency key for a notification."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Dispatcher:
    """Turns the current alerts into notifications in the outbox."""

    def __init__(self, routes: list[Route], receivers: Sequence[ReceiverConfig], outbox: Outbox,
                 external_url: str, resend_delay: float) -> None:  # fmt: skip
        self.routes, self.outbox = routes, outbox
        self.receivers = {r.name: r for r in receivers}
        self.external_url, self.resend_delay = external_url, resend_delay
        self.groups: dict[tuple[Any, ...], GroupState] = {}
        self.am_sent: dict[str, float] = {}  # fingerprint -> last sent to Alertmanager

    def flush(self, alerts: Sequence[AlertDict], now: float) -> int:
        """Route and group the alerts; queue what is due; return notifications queued."""
        grouped: dict[tuple[Any, ...], tuple[Route, dict[str, str], list[AlertDict]]] = {}
        to_am: dict[str, list[AlertDict]] = {}
        for alert in alerts:
            for route in matching(self.routes, alert["labels"]):
                if self.receivers[route.cfg.receiver].type == "alertmanager":
                    to_am.setdefault(route.cfg.receiver, []).append(alert)
                    continue
                glabels = {k: alert["labels"].get(k, "") for k in route.cfg.group_by}
                key = (route.index, tuple(sorted(glabels.items())))
                grouped.setdefault(key, (route, glabels, []))[2].append(alert)
        queued = sum(self._group(key, *grouped[key], now) for key in grouped)
        for gone in set(self.groups) - set(grouped):
            del self.groups[gone]
        present = {a["fingerprint"] + a["status"] for items in to_am.values() for a in items}
        self.am_sent = {k: v for k, v in self.am_sent.items() if k in present}
        return queued + sum(self._alertmanager(name, items, now) for name, items in to_am.items())

    def _group(self, key: tuple[Any, ...], route: Route, glabels: dict[str, str],
               alerts: list[AlertDict], now: float) -> int:  # fmt: skip
        state = self.groups.setdefault(key, GroupState(first_seen=now))
        firing = [a for a in alerts if a["status"] == "firing"]
        # Only what on-call saw firing gets a resolve (an inhibited warning never fired for them).
        fresh = state.fired - state.resolved_sent
        resolved = [a for a in alerts if a["status"] == "resolved" and a["fingerprint"] in fresh]
        send = firing + (resolved if route.cfg.send_resolved else [])
        current = frozenset((a["fingerprint"], a["status"]) for a in send)
        if not send or not due(state, current, bool(firing), route.cfg, now):
            return 0
        receiver = self.receivers[route.cfg.receiver]
        group_key = f"{route.index}:{json.dumps(glabels, sort_keys=True)}"
        payload = webhook_v4(receiver.name, group_key, glabels, send, self.external_url)
        self._put(receiver, payload, key_of(receiver.name, group_key, now, sorted(current)))
        # A delivered resolve leaves the group, as in Alertmanager: only firing ones are remembered.
        state.last_sent, state.sent = now, frozenset(x for x in current if x[1] == "firing")
        state.resolved_sent |= {a["fingerprint"] for a in resolved}
        state.fired |= {a["fingerprint"] for a in firing}
        return 1

    def _alertmanager(self, name: str, alerts: list[AlertDict], now: float) -> int:
        """Send firing alerts every resend_delay (endsAt ahead), resolved once, as Prometheus."""
        send = []
        for a in alerts:
            sent_key = a["fingerprint"] + a["status"]
            last = self.am_sent.get(sent_key)
            if last is not None and (a["status"] == "resolved" or now - last < self.resend_delay):
                continue
            item = dict(a)
            if a["status"] == "firing":  # Alertmanager resolves it itself if we go silent
                item["endsAt"] = rfc3339(now + 4 * self.resend_delay)
            send.append(item)
            self.am_sent[sent_key] = now
        if not send:
            return 0
        payload = {"alerts": send}
        self._put(
            self.receivers[name], payload, key_of(name, now, [a["fingerprint"] for a in send])
        )
        return 1

    def _put(self, receiver: ReceiverConfig, payload: dict[str, Any], key: str) -> None:
        for i, _ in enumerate(receiver.targets()):
            self.outbox.put(f"{receiver.name}#{i}", f"{key}#{i}", payload)
