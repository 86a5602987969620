"""One sender thread per receiver URL: oldest first, retried with backoff, never blocking others."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from agent.notify.channels.base import Channel
from agent.notify.outbox import Outbox
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


class Sender(threading.Thread):
    """Delivers one receiver's queue in order; a hanging receiver only stalls itself."""

    def __init__(self, outbox: Outbox, receiver: str, channel: Channel, timeout: float,
                 counts: Counter[tuple[str, str]], *,
                 post: Post | None = None) -> None:  # fmt: skip
        super().__init__(name=f"send-{receiver}", daemon=True)
        self.outbox, self.receiver, self.channel = outbox, receiver, channel
        self.timeout, self.counts = timeout, counts
        self.stopping = threading.Event()
        self._failing = False
        self._post = post or _requests_post()

    def run(self) -> None:
        """Send until stopped, under the supervisor: an unexpected error restarts the loop."""
        SUPERVISOR.run(f"sender:{self.receiver}", self._loop, self.stopping)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            seen = self.outbox.generation  # read first: a put after this wakes the wait below
            wait = self.step(time.time())
            if wait > 0:
                self.outbox.wait(seen, min(wait, 1.0))

    def step(self, now: float) -> float:
        """Try the head of the queue if it is due; return how long until the next try."""
        item = self.outbox.head(self.receiver)
        if item is None or item.next_at > now:
            return 1.0 if item is None else item.next_at - now
        error = self._send(item.payload, item.key)
        if error is None:
            self.outbox.done(item)
            self.counts[(self.receiver, "sent")] += 1
            if self._failing:
                log.info("receiver %s delivers again", self.receiver)
            self._failing = False
            return 0.0
        due = self.outbox.failed(item, error, now)
        self.counts[(self.receiver, "failed")] += 1
        if not self._failing:  # one line when it starts failing, not one per retry
            log.warning("receiver %s failed (%s); retrying with backoff, next in %.0fs",
                        self.receiver, error, due - now)  # fmt: skip
        self._failing = True
        return due - now

    def _send(self, payload: dict[str, object], key: str) -> str | None:
        """Post once; return None when delivered, else the reason."""
        try:
            url, body, headers = self.channel.request(payload, key)
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            return f"cannot build the request: {type(exc).__name__}: {exc}"  # retried, counted
        try:
            status, text = self._post(url, body, headers, self.timeout)
        except OSError as exc:  # requests' errors are OSErrors too
            return type(exc).__name__
        if self.channel.accepted(status, text):
            return None
        return f"HTTP {status}: {text[:200]}"

    def stop(self) -> None:
        """Ask the thread to end after its current try."""
        self.stopping.set()
        self.outbox.wake()
