"""One sender thread per receiver URL: oldest first, retried with backoff, never blocking others."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.backends import BACKENDS
from agent.config.notify import ReceiverConfig
from agent.notify.channels.base import Channel
from agent.notify.outbox import Item, Outbox, OutboxWriteError
from agent.notify.payload import rfc3339
from agent.secrets import scrub
from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)
# (url, body, headers, timeout) -> (status, text); tests put a fake transport here
Post = Callable[[str, bytes, dict[str, str], float], tuple[int, str]]


def _requests_post() -> Post:
    """Post through one requests session (imported only when receivers are configured)."""
    import requests

    session = requests.Session()

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
        # A 3xx is an answer, not a route: the signed body goes nowhere but the configured URL.
        resp = session.post(url, data=body, headers=headers, timeout=timeout,
                            allow_redirects=False)  # fmt: skip
        return resp.status_code, resp.text

    return post


@dataclass(frozen=True)
class Target:
    """One URL of a receiver: the receiver's name and the URL's place in its list."""

    receiver: str
    index: int

    @property
    def id(self) -> str:
        """The id the outbox, the metrics and the logs know it by."""
        return f"{self.receiver}#{self.index}"


def targets(receiver: ReceiverConfig) -> list[tuple[Target, str]]:
    """Return each URL of a receiver with the Target that addresses it."""
    return [(Target(receiver.name, i), url) for i, url in enumerate(receiver.targets())]


@dataclass(frozen=True)
class Policy:
    """How a receiver's queue is kept: bounds, staleness, current state (for Alertmanager)."""

    keep: int = 10_000
    max_age: float = 86_400.0
    stale_after: float = 600.0
    current_state: bool = False
    ends_in: float = 240.0  # current state: a firing alert's endsAt, this far after the send


class Sender(threading.Thread):
    """Delivers one receiver's queue in order; a hanging receiver only stalls itself."""

    def __init__(self, outbox: Outbox, target: Target, channel: Channel, timeout: float,
                 counts: Counter[tuple[str, str]], *, post: Post | None = None,
                 policy: Policy = Policy()) -> None:  # fmt: skip
        super().__init__(name=f"send-{target.id}", daemon=True)
        self.target, self.receiver = target, target.id
        self.outbox, self.channel = outbox, channel
        self.timeout, self.counts, self.policy = timeout, counts, policy
        self.backend = f"receiver:{target.id}"
        self.stopping = threading.Event()
        self._dropping = False
        self._delivered: list[Item] = []  # sent, not yet off the queue (a failed write)
        self._post = post or _requests_post()
        self._after: threading.Thread | None = None

    def start(self, after: threading.Thread | None = None) -> None:
        """Start sending once `after` (the sender this one replaces) has ended."""
        self._after = after
        super().start()

    def run(self) -> None:
        """Send until stopped, under the supervisor: an unexpected error restarts the loop."""
        if self._after is not None:
            self._after.join()  # its try in flight ends first: nothing is sent twice
            self._after = None
        try:
            SUPERVISOR.run(f"sender:{self.receiver}", self._loop, self.stopping)
        finally:
            self.outbox.close_thread()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            seen = self.outbox.generation  # read first: a put after this wakes the wait below
            wait = self.step(time.time())
            if wait > 0:
                self.outbox.wait(seen, min(wait, 1.0))

    def step(self, now: float) -> float:
        """Try the head of the queue if it is due; return how long until the next try.

        A write the outbox refuses (disk full) is tried again a second later. What was sent
        but could not be taken off the queue stays in hand and is never sent again; nothing
        after it is sent before it is off the queue, so the order holds.
        """
        try:
            self._forget_delivered()
            return self._try(now)
        except OutboxWriteError:  # counted and logged by the outbox
            return 1.0

    def _forget_delivered(self) -> None:
        while self._delivered:
            self.outbox.done(self._delivered[0])
            self._delivered.pop(0)

    def _try(self, now: float) -> float:
        self._trim(now)
        items = self.outbox.batch(self.receiver, 500 if self.policy.current_state else 1)
        if not items or items[0].next_at > now:
            return 1.0 if not items else items[0].next_at - now
        reason, detail = self._send(self._payload(items, now), items[0].key)
        if reason is None:
            self.counts[(self.receiver, "sent")] += 1
            BACKENDS.ok(self.backend, now)
            self._dropping = False
            self._delivered = items
            self._forget_delivered()
            return 0.0
        self.counts[(self.receiver, "failed")] += 1
        BACKENDS.failed(self.backend, reason, detail, now)
        due = self.outbox.failed(items[0], f"{reason}: {detail}" if detail else reason, now)
        return due - now

    def _trim(self, now: float) -> None:
        """Keep the queue within its bounds; count what goes, and say so once per outage."""
        expired, overflow = self.outbox.trim(self.receiver, self.policy.keep,
                                             self.policy.max_age, now)  # fmt: skip
        for reason, n in (("expired", expired), ("overflow", overflow)):
            if n:
                self.counts[(self.receiver, f"dropped_{reason}")] += n
                if not self._dropping:
                    log.warning("receiver %s: dropped %d queued notifications (%s; bounds: %d, "
                                "%.0fs)", self.receiver, n, reason, self.policy.keep,
                                self.policy.max_age)  # fmt: skip
                self._dropping = True

    def _payload(self, items: list[Item], now: float) -> dict[str, Any]:
        """Return what to send: current state for Alertmanager, else the queued payload."""
        if self.policy.current_state:  # each alert as it is now: endsAt from the time of sending
            ends = rfc3339(now + self.policy.ends_in)
            alerts = [{**i.payload, "endsAt": ends} if i.payload["status"] == "firing"
                      else i.payload for i in items]  # fmt: skip
            return {"alerts": alerts}
        age = now - items[0].created
        if age > self.policy.stale_after:  # still ordered and delivered, but said to be late
            return {**items[0].payload, "queuedSeconds": round(age)}
        return items[0].payload

    def _send(self, payload: dict[str, Any], key: str) -> tuple[str | None, str]:
        """Post once; return (None, "") when delivered, else a short reason and its detail."""
        try:
            url, body, headers = self.channel.request(payload, key)
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            return "cannot build the request", f"{type(exc).__name__}: {exc}"  # retried, counted
        try:
            status, text = self._post(url, body, headers, self.timeout)
        except OSError as exc:  # requests' errors are OSErrors too
            return type(exc).__name__, scrub(str(exc), url)[:200]
        if self.channel.accepted(status, text):
            return None, ""
        return f"HTTP {status}", text[:200]

    def stop(self) -> None:
        """Ask the thread to end after its current try."""
        self.stopping.set()
        self.outbox.wake()
