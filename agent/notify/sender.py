"""One sender thread per receiver URL: oldest first, retried with backoff, never blocking others."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from agent.notify.channels import Channel

if TYPE_CHECKING:
    pass
from agent.notify.outbox import Outbox

log = logging.getLogger(__name__)


class Sender(threading.Thread):
    """Delivers one receiver's queue in order; a hanging receiver only stalls itself."""

    def __init__(self, outbox: Outbox, receiver: str, channel: Channel, timeout: float,
                 counts: Counter[tuple[str, str]]) -> None:  # fmt: skip
        super().__init__(name=f"send-{receiver}", daemon=True)
        self.outbox, self.receiver, self.channel = outbox, receiver, channel
        self.timeout, self.counts = timeout, counts
        self.stopping = threading.Event()
        self._failing = False
        import requests  # only with receivers configured: 6 MB the default run need not hold

        self._requests = requests
        self._session = requests.Session()

    def run(self) -> None:
        """Send until stopped."""
        while not self.stopping.is_set():
            item = self.outbox.head(self.receiver)
            wait = 1.0 if item is None else item.next_at - time.time()
            if wait > 0:
                with self.outbox.wakeup:
                    self.outbox.wakeup.wait(min(wait, 1.0))
                continue
            assert item is not None
            error = self._send(item.payload, item.key)
            if error is None:
                self.outbox.done(item)
                self.counts[(self.receiver, "sent")] += 1
                if self._failing:
                    log.info("receiver %s delivers again", self.receiver)
                self._failing = False
            else:
                due = self.outbox.failed(item, error)
                self.counts[(self.receiver, "failed")] += 1
                if not self._failing:  # one line when it starts failing, not one per retry
                    log.warning("receiver %s failed (%s); retrying with backoff, next in %.0fs",
                                self.receiver, error, due - time.time())  # fmt: skip
                self._failing = True

    def _send(self, payload: dict[str, object], key: str) -> str | None:
        """Post once; return None when delivered, else the reason."""
        url, body, headers = self.channel.request(payload, key)
        try:
            resp = self._session.post(url, data=body, headers=headers, timeout=self.timeout)
        except self._requests.RequestException as exc:
            return type(exc).__name__
        if self.channel.accepted(resp.status_code, resp.text):
            return None
        return f"HTTP {resp.status_code}: {resp.text[:200]}"

    def stop(self) -> None:
        """Ask the thread to end after its current try."""
        self.stopping.set()
